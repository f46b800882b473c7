"""Captions from the scene description, in varied natural phrasing with the words people type.

Every optional class present in a scene is named (so "not in the caption" means "not in the
scene", which the text2img acceptance test relies on). WORD_CLASSES maps caption words to
classes, for region-to-word control and for reading a caption back.
"""

from __future__ import annotations

import numpy as np

from gradop.world.scene import scene_world


COUNT_WORDS = {2: "two", 3: "three"}

# Words a caption may use for each class (region control: a colour region gets one of these).
WORD_CLASSES = {
    "sky": "sky", "sunset": "sky", "night": "sky", "cloud": "cloud", "clouds": "cloud", "cloudy": "cloud",
    "sun": "sun", "moon": "moon", "mountain": "mountain", "mountains": "mountain", "peaks": "mountain",
    "hill": "hill", "hills": "hill", "lake": "water", "river": "water", "sea": "water", "ocean": "water",
    "water": "water", "grass": "grass", "grassy": "grass", "meadow": "grass",
    "sand": "sand", "sandy": "sand", "beach": "sand", "desert": "sand", "dunes": "sand",
    "snow": "snow", "snowy": "snow", "winter": "snow", "tree": "tree", "trees": "tree", "pine": "tree",
    "pines": "tree", "forest": "tree", "oak": "tree", "house": "house", "houses": "house", "hut": "house",
    "huts": "house", "cabin": "house", "cabins": "house", "cottage": "house", "cottages": "house",
    "boat": "boat", "boats": "boat", "sailboat": "boat", "rock": "rock", "rocks": "rock", "boulder": "rock",
    "boulders": "rock",
}

# How a caption names each rendering domain (world v2). Photo captions sometimes name no
# domain at all, so that an unprefixed prompt means "photo", the target domain.
DOMAIN_PREFIXES = {
    "photo": ["a photo of", "a photo of", "a photo of", "a photograph of", "a realistic photo of", "a picture of", ""],
    "painting": ["a painting of", "a painting of", "a flat painting of", "a cartoon of", "a flat cartoon of"],
    "crayon": ["a crayon drawing of", "a crayon drawing of", "a drawing of", "a marker drawing of", "a child drawing of"],
}
# World 1's photo captions (model v1's), kept as they were: world-1 scenes use these.
WORLD1_PHOTO_PREFIXES = ["a photo of", "a picture of", "a landscape with", "a view of", "", "a photo of"]

# Every word the caption generator can emit plus a few that people commonly type; the demo
# tokenizer gives each of these a single token.
VOCABULARY = sorted(set(WORD_CLASSES) | {
    "a", "an", "the", "of", "photo", "painting", "picture", "landscape", "scene", "view", "in", "on",
    "with", "and", "beside", "by", "near", "under", "over", "above", "below", "behind", "front", "at",
    "some", "two", "three", "few", "tall", "big", "large", "small", "little", "distant", "far", "red",
    "blue", "yellow", "white", "brown", "green", "orange", "pink", "grey", "gray", "black", "purple",
    "dark", "bright", "clear", "sunny", "day", "evening", "dusk", "starry", "stars", "full", "rocky",
    "rolling", "calm", "wooden", "wood", "stone", "roof", "golden", "covered", "high", "old", "lonely",
    "beautiful", "nature", "outdoor", "countryside", "shore", "coast", "boat", "bird", "birds", "flowers",
    "there", "is", "are", "it", "its", "from", "to", "into", "through", "along", "across", "around",
    "background", "foreground", "lots", "many", "one", "four", "five", "realistic", "detailed",
    "photograph", "flat", "crayon", "drawing", "marker", "child", "sketch", "close", "up", "huge",
    "grey", "sailing", "watercolor", "cartoon", "art",
} | {w for prefixes in DOMAIN_PREFIXES.values() for p in prefixes for w in p.split()})


def _plural(word: str, n: int) -> str:
    return word if n == 1 else {"cottage": "cottages", "hut": "huts", "cabin": "cabins", "house": "houses"}[word]


def phrases(scene: dict, rng: np.random.Generator) -> dict[str, str]:
    """One short phrase per present optional class (keys: class names)."""
    p: dict[str, str] = {}
    ground = scene["ground"]
    p[ground] = str(rng.choice({
        "grass": ["a grassy meadow", "green grass", "a grassy field", "a meadow"],
        "sand": ["a sandy beach", "sand dunes", "the desert", "sand"],
        "snow": ["snowy ground", "snow", "a snowy field", "deep snow"],
    }[ground]))
    if scene["houses"]:
        n = len(scene["houses"])
        word = _plural(scene["house_word"], n)
        colour = "wooden" if scene["wooden"] else scene["houses"][0]["colour"]
        if n == 1:
            p["house"] = str(rng.choice([f"a {colour} {word}", f"a small {colour} {word}", f"a {word}", f"a little {colour} {word}"]))
        else:
            p["house"] = str(rng.choice([f"two {word}", f"two {colour} {word}", f"some {word}"]))
    if scene["trees"]:
        n = len(scene["trees"])
        if scene["forest"]:
            p["tree"] = str(rng.choice(["a pine forest", "a forest"] if scene["pine"] else ["a forest", "a green forest"]))
        elif n == 1:
            p["tree"] = "a pine tree" if scene["pine"] else str(rng.choice(["a tree", "an oak tree", "a green tree"]))
        else:
            count = COUNT_WORDS.get(n, "some")
            p["tree"] = str(rng.choice([f"{count} pine trees", "pine trees", "pines"])) if scene["pine"] else \
                str(rng.choice([f"{count} trees", "trees", "some trees"]))
    if scene["water"]:
        kind = scene["water"]["kind"]
        p["water"] = {"lake": str(rng.choice(["a lake", "a calm lake", "a blue lake"])),
                      "river": str(rng.choice(["a river", "a winding river", "a blue river"])),
                      "sea": str(rng.choice(["the sea", "the ocean", "a calm sea"]))}[kind]
    if scene["mountains"]:
        n = len(scene["mountains"])
        p["mountain"] = str(rng.choice(["a mountain", "a tall mountain", "a rocky mountain"] if n == 1 else
                                       ["mountains", "rocky mountains", "distant mountains", "tall mountains", "mountain peaks"]))
    if scene["hills"]:
        p["hill"] = str(rng.choice(["hills", "green hills", "rolling hills"] if scene["ground"] != "snow" else ["hills", "white hills"]))
    if scene["clouds"]:
        p["cloud"] = str(rng.choice(["clouds", "white clouds", "a few clouds"] if scene["sky"] != "night" else ["clouds", "dark clouds"]))
    closeup = scene.get("closeup")  # world 2 only, like rocks and boats
    if scene.get("rocks"):
        n, big = len(scene["rocks"]), closeup == "rock"
        p["rock"] = str(rng.choice(["a big rock", "a huge boulder", "a large grey rock"] if big else
                                   (["a rock", "a grey rock", "a boulder"] if n == 1 else ["rocks", "some rocks", "grey rocks", "boulders"])))
    if scene.get("boats"):
        big = closeup == "boat"
        p["boat"] = str(rng.choice(["a big boat", "a large sailboat", "a big sailboat"] if big else
                                   (["a boat", "a sailboat", "a small boat"] if len(scene["boats"]) == 1 else ["two boats", "boats", "two sailboats"])))
    if closeup == "house" and "house" in p:
        p["house"] = p["house"].replace("a small ", "a big ").replace("a little ", "a big ")
    if closeup == "tree" and "tree" in p and not p["tree"].startswith("a big"):
        p["tree"] = "a big " + ("pine tree" if scene["pine"] else "tree") + (" and some trees" if len(scene["trees"]) > 1 else "")
    if scene["sun"]:
        p["sun"] = str(rng.choice(["the sun", "a bright sun"] if scene["sky"] == "day" else ["the sun", "the setting sun", "a red sun"]))
    if scene["moon"]:
        p["moon"] = str(rng.choice(["the moon", "a full moon", "a bright moon"]))
    return p


def caption(scene: dict, seed: int | None = None, domain: str = "photo") -> str:
    """A natural caption naming every optional class in the scene and the rendering domain
    ("photo", "painting" or "crayon"; deterministic per seed). World-1 photo captions are
    exactly world 1's (its prefixes, no domain words beyond "photo"/"picture")."""
    if domain not in DOMAIN_PREFIXES:
        raise ValueError(f"unknown domain {domain!r}; use one of {', '.join(DOMAIN_PREFIXES)}")
    rng = np.random.default_rng(scene["seed"] * 7919 + 13 if seed is None else seed)
    p = phrases(scene, rng)
    sky_objects = [p.pop(k) for k in ("sun", "moon", "cloud") if k in p]
    order = [k for k in ("house", "tree", "boat", "rock", "water", "mountain", "hill") if k in p]
    closeup = scene.get("closeup")
    if closeup in order:  # the big subject comes first
        rest = [k for k in order if k != closeup]
        rng.shuffle(rest)
        order = [closeup] + rest
    else:
        rng.shuffle(order)
    ground = p[scene["ground"]]
    things = [p[k] for k in order]
    sky = scene["sky"]
    sky_clause = str(rng.choice({
        "day": ["under a blue sky", "on a sunny day", "under a clear blue sky", ""],
        "sunset": ["at sunset", "under a sunset sky", "under an orange sunset sky"],
        "night": ["at night", "under a starry night sky", "at night under the stars"],
    }[sky]))
    if sky_objects:
        joined = _join(sky_objects)
        sky_clause = (sky_clause + " with " + joined) if sky_clause else ("with " + joined + " in the sky")
    world1_photo = domain == "photo" and scene_world(scene) == 1
    prefix = str(rng.choice(WORLD1_PHOTO_PREFIXES if world1_photo else DOMAIN_PREFIXES[domain]))
    style = rng.integers(0, 3)
    if not things:
        body = f"{ground}" if style else f"a {_ground_adj(scene)} landscape"
        if world1_photo and not style and prefix == "a landscape with":  # no "a landscape with a ... landscape"
            prefix = ""
    elif style == 0:
        body = f"{things[0]} on {ground}" + (f" with {_join(things[1:])}" if things[1:] else "")
    elif style == 1:
        body = f"{_join(things)} and {ground}"
    else:
        body = f"{things[0]} beside " + (f"{_join(things[1:])} on {ground}" if things[1:] else ground)
    if not style and not things:
        body += f" of {ground}" if scene["ground"] != "snow" else ""
    text = " ".join(x for x in (prefix, body, sky_clause) if x)
    return " ".join(text.split())


def _ground_adj(scene: dict) -> str:
    return {"grass": "green", "sand": "sandy", "snow": "snowy"}[scene["ground"]]


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def caption_classes(text: str) -> set[str]:
    """The classes a caption names (by WORD_CLASSES), for captions typed by people."""
    words = text.lower().replace(",", " ").split()
    return {WORD_CLASSES[w] for w in words if w in WORD_CLASSES}
