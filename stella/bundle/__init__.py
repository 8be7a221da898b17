"""Bundles from the last pipeline step to the receiving side: manifest and provenance, encryption,
signing, atomic publish, archives, and offline verification, trust and decryption.
"""
