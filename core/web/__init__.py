"""Web kit shared by every layer's pages and APIs.

Templates and translations (zh-CN first, English second), CSRF protection,
security headers, request ids, problem+json and translated error pages, JSON
logs that redact secrets and personal data, and the health endpoints.
"""
