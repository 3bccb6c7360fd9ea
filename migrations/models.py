"""Every layer's models, imported so that ``Base.metadata`` holds the whole schema."""

import core.audit  # noqa: F401
import directory.models  # noqa: F401
from core.db import Base

metadata = Base.metadata
