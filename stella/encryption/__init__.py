"""The encryption port: age and AES-256-GCM payload encryption, data keys wrapped per recipient
(age, RSA-OAEP, a PKCS#11 token key), and the recipient and identity forms users give.
"""
