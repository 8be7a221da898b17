"""The signer port: key references (files, environment, cosign keys, PKCS#11 tokens) to signers
that sign deterministically, and verifiers of the public keys receivers pin.
"""
