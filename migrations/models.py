"""Every layer's models, imported so that ``Base.metadata`` holds the whole schema.

A module that defines tables must be listed in ``MODEL_MODULES``.
"""

from core import audit, signing_keys
from core.db import Base
from directory import api_tokens, apps, models

MODEL_MODULES = (audit, signing_keys, models, api_tokens, apps)

metadata = Base.metadata
