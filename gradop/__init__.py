"""gradop: stroke-guided image synthesis with latent diffusion (GradOP / GradOP+)."""

__version__ = "0.1.0"

from gradop.pipeline import METHODS, GradopPipeline  # noqa: E402
from gradop.results import GenerationCancelled, GenerationResult, Progress  # noqa: E402

__all__ = ["GradopPipeline", "GenerationResult", "GenerationCancelled", "Progress", "METHODS", "__version__"]
