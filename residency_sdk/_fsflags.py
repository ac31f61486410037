"""Open flags for walking a folder without following symbolic links.

Every path below a root is opened relative to its parent directory's descriptor and never
through a symbolic link (``O_NOFOLLOW``); ``O_NONBLOCK`` keeps a planted FIFO from
blocking a reader (it has no effect on regular files). Shared by the local storage
backend and the local audit anchor folder.
"""

from __future__ import annotations

import os

O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
O_DIRECTORY: int = getattr(os, "O_DIRECTORY", 0)
O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
O_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
DIR_FLAGS = os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
READ_FLAGS = os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC
