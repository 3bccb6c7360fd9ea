"""SCIM 2.0 service provider (RFC 7643, RFC 7644) for the directory: see docs/scim.md.

``router`` holds the endpoints (mounted by ``idp.app``), ``resources`` the
published schemas, ``users`` and ``groups`` the mapping onto the directory,
``filters`` the filter-to-SQL translation, ``models`` the one table SCIM adds.
"""
