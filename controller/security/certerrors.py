"""The certificate errors, apart from ``controller.security.certs`` so that catching them does not
load ``cryptography`` (see ``controller.lazy``)."""


class CertError(Exception):
    """A certificate or key is unusable; the message says why, for a technician."""


class SignatureError(CertError):
    """A firmware signature is malformed or does not match the file."""
