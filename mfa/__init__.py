"""MFA layer: authentication factors and the policy that asks for them.

Owns TOTP, WebAuthn passkeys, SMS one-time codes, recovery codes, QR-code
login, brute-force guards and the MFA policy (who needs which factor; the
``acr`` and ``amr`` values). Imports ``directory`` and ``core``.
"""
