"""Every layer's models, imported so that ``Base.metadata`` holds the whole schema."""

import core.audit
import core.signing_keys  # noqa: F401
import directory.api_tokens
import directory.models  # noqa: F401
from core.db import Base

metadata = Base.metadata
