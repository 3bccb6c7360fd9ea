"""Every layer's models, imported so that ``Base.metadata`` holds the whole schema.

A module that defines tables must be listed in ``MODEL_MODULES``.
"""

from core import audit, signing_keys
from core.db import Base
from directory import api_tokens, apps, models, subjects
from directory.importer import runs as import_runs
from directory.scim import models as scim_models
from idp.oidc import refresh_tokens
from mfa import credentials as mfa_credentials

MODEL_MODULES = (
    audit, signing_keys, models, api_tokens, apps, import_runs, scim_models, refresh_tokens,
    mfa_credentials, subjects,
)

metadata = Base.metadata
