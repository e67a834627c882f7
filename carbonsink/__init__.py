"""carbonsink: China's carbon sinks mapped, totalled, trended and attributed."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("carbonsink")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.1.0+src"

__all__ = ["__version__"]
