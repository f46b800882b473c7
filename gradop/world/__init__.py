"""gradop's procedural landscape world: scenes, renderers (photo, painting, crayon, strokes, class masks)
and captions. The demo model (pretrained_models/gradop-demo) is trained on it and the judge
(gradop.world.judge) measures generations against it."""

from gradop.world.captions import DOMAIN_PREFIXES, VOCABULARY, WORD_CLASSES, caption, caption_classes
from gradop.world.domains import DOMAINS, render, render_crayon, render_painting
from gradop.world.render import render_masks, render_photo, render_strokes, to_pil
from gradop.world.scene import (CLASSES, CLASS_ID, DEFAULT_WORLD, OPTIONAL_CLASSES, WORLDS, sample_scene, scene_classes,
                                scene_world)

__all__ = [
    "CLASSES", "CLASS_ID", "DEFAULT_WORLD", "DOMAINS", "DOMAIN_PREFIXES", "OPTIONAL_CLASSES", "VOCABULARY", "WORD_CLASSES",
    "WORLDS", "caption", "caption_classes", "render", "render_crayon", "render_masks", "render_painting", "render_photo",
    "render_strokes", "sample_scene", "scene_classes", "scene_world", "to_pil",
]
