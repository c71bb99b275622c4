"""Words that name a posture, in three strengths.

Retrieval puts the posture first, so the posture a query asks for is read from these cues:
named positions ("seiza" is kneeling even when "sitting in seiza") beat verbs ("kneeling"),
which beat places that imply a posture ("on a bench" is sitting), which beat states ("asleep"
is usually lying). Within a strength the earliest mention wins.
"""

from __future__ import annotations

import functools
import re

NAMED, VERB, PLACE, STATE = 0, 1, 2, 3

POSTURE_CUES: dict[str, dict[int, tuple[str, ...]]] = {
    "standing": {
        VERB: ("stand", "stands", "standing", "stood", "standing up", "stand up", "stance",
               "leaning against", "on one foot"),
        PLACE: ("on her feet", "on his feet", "on their feet", "on my feet", "upright"),
        STATE: ("full height", "idle", "t-pose", "a-pose", "tall"),
    },
    "sitting": {
        NAMED: ("yokozuwari", "indian style", "criss-cross"),
        VERB: ("sit", "sits", "sitting", "sat", "seated", "sitting down", "sit down", "perched",
               "perch", "perching", "cross-legged", "cross legged", "crosslegged", "lounging"),
        PLACE: ("bench", "chair", "couch", "sofa", "stool", "desk", "throne", "swing",
                "bleachers", "windowsill", "armchair", "on the floor", "on the ground",
                "on the edge", "at a table", "at the table", "on a step", "on the stairs",
                "on the steps",
            "seat", "in a car", "on a bike", "on a wall", "picnic", "booth"),
        STATE: ("lap", "table"),
    },
    "kneeling": {
        NAMED: ("seiza", "on one knee", "one knee down", "knee down", "down on one knee"),
        VERB: ("kneel", "kneels", "kneeling", "knelt", "genuflect", "genuflecting"),
        PLACE: ("on her knees", "on his knees", "on their knees", "on my knees",
                "on both knees"),
        STATE: ("proposal", "proposing", "knighted", "kowtow", "bowing down"),
    },
    "lying": {
        VERB: ("lie", "lies", "lying", "lay", "laying", "lays", "lain", "lying down",
               "lie down", "reclining", "reclined", "recline", "sprawled", "sprawling",
               "sprawl", "sunbathing", "sunbathe", "floating", "passed out", "collapsed",
               "fainted", "unconscious", "lying flat", "flat on her back", "flat on his back",
               "stretched out on", "laid out on"),
        PLACE: ("in bed", "on the bed", "on a bed", "bed", "futon", "hammock",
                "on her back", "on his back", "on their back", "on my back", "on her stomach",
                "on his stomach", "on their stomach", "on her belly", "on his belly",
                "on her side", "on his side", "on their side", "face down", "face up",
                "in the grass", "on the grass", "beach towel", "pillow"),
        STATE: ("asleep", "napping", "nap", "sleeping", "sleeps", "sleep", "dozing",
                "resting", "rest", "plank"),
    },
    "walking": {
        VERB: ("walk", "walks", "walking", "walked", "stroll", "strolls", "strolling",
               "stride", "striding", "stepping", "wander", "wandering", "wanders", "march",
               "marching", "hiking", "hike", "pacing", "sauntering", "strut", "strutting",
               "strolls", "trudging", "ambling", "promenade", "tiptoe", "tiptoeing"),
        PLACE: ("on the way", "down the street", "down the road", "along the", "crosswalk",
                "walkway", "sidewalk", "path", "commute", "commuting"),
        STATE: ("step", "steps", "footsteps", "catwalk", "runway"),
    },
    "running": {
        VERB: ("run", "runs", "running", "ran", "sprint", "sprints", "sprinting", "jog",
               "jogs", "jogging", "dash", "dashing", "dashes", "rushing", "chase", "chasing",
               "racing", "fleeing", "flee", "bolting", "charging", "scurrying"),
        PLACE: ("track", "marathon", "finish line", "race"),
        STATE: ("hurry", "hurrying", "late for", "running late", "in a rush", "rush",
                "fast", "speed"),
    },
    "jumping": {
        VERB: ("jump", "jumps", "jumping", "jumped", "leap", "leaps", "leaping", "leapt",
               "hop", "hops", "hopping", "bounce", "bouncing", "vault", "vaulting",
               "springing", "pouncing", "pounce"),
        PLACE: ("midair", "mid-air", "in the air", "airborne", "off the ground",
                "trampoline"),
        NAMED: ("star jump", "jumping jack", "jumping jacks", "flying kick", "jump kick"),
        STATE: ("cheerleader", "cheer"),
    },
    "crouching": {
        VERB: ("crouch", "crouches", "crouching", "crouched", "squat", "squats", "squatting",
               "squatted", "hunker", "hunkered", "hunkering", "ducking", "crouch down",
               "squat down", "huddle", "huddled", "bend down", "bending down", "bent down",
               "stooping", "stoop", "cowering", "cower", "hunched down"),
        PLACE: ("low to the ground", "close to the ground", "on her haunches",
                "on his haunches", "on the heels", "on her heels"),
        STATE: ("petting", "picking up", "pick up", "tying shoelaces", "shoelace", "sneaking",
                "stealth", "ninja", "hiding"),
    },
}  # fmt: skip

CUE_WORDS = frozenset(
    cue
    for cues in POSTURE_CUES.values()
    for group in cues.values()
    for cue in group
    if " " not in cue
)

_PATTERNS: dict[int, dict[str, re.Pattern[str]]] = {
    strength: {
        posture: re.compile(r"\b(" + "|".join(re.escape(c) for c in cues[strength]) + r")\b")
        for posture, cues in POSTURE_CUES.items()
        if cues.get(strength)
    }
    for strength in (NAMED, VERB, PLACE, STATE)
}


def normalise(text: str) -> str:
    return " ".join(spelled(w, CUE_WORDS) for w in re.findall(r"[a-z0-9'-]+", text.lower()))


# Typos are read only past the first letters, where people rarely slip, so "waking" never
# becomes "walking"; real words one typo from a cue are listed so they stay themselves.
TYPO_FROM = 3
MIN_TYPO_LENGTH = 6
REAL_WORDS = frozenset({"hoping", "siting", "staring", "sanding", "paying", "waking", "seeping"})


def spelled(word: str, vocabulary: frozenset[str]) -> str:
    """`word`, or the vocabulary word it is a typo of: a dropped g ("sittin'"), or one letter
    missing, added or swapped ("standng", "jumpping", "sititng")."""
    word = word.rstrip("'")
    if word in vocabulary or word in REAL_WORDS or len(word) < MIN_TYPO_LENGTH:
        return word
    if len(word) > _longest(vocabulary) + 1:
        # No typo of a word (one letter away) is longer; and each of its candidates would be
        # as long as it (a pasted 100,000-letter word: 2.6 million of them).
        return word
    if word.endswith("in") and word + "g" in vocabulary:
        return word + "g"
    for guess in _one_typo_away(word):
        if guess in vocabulary:
            return guess
    return word


@functools.cache
def _longest(vocabulary: frozenset[str]) -> int:
    return max(map(len, vocabulary), default=0)


def _one_typo_away(word: str) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    missing = [word[:i] + c + word[i:] for i in range(TYPO_FROM, len(word) + 1) for c in letters]
    # A trailing s is a plural, not a typo ("tiptoes" are feet).
    added = [word[:i] + word[i + 1 :] for i in range(TYPO_FROM, len(word) - word.endswith("s"))]
    swapped = [
        word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        for i in range(TYPO_FROM - 1, len(word) - 1)
    ]
    return missing + added + swapped


def posture_of(text: str) -> str | None:
    """The posture a text asks for, or None when it names none."""
    text = normalise(text)
    for strength in (NAMED, VERB, PLACE, STATE):
        found = [
            (match.start(), posture)
            for posture, pattern in _PATTERNS[strength].items()
            if (match := pattern.search(text))
        ]
        if found:
            return min(found)[1]
    return None


def words(text: str) -> set[str]:
    """Content words with a crude stem, for tag overlap."""
    return {_stem(w) for w in normalise(text).split() if w not in _STOP}


def action_words(text: str) -> set[str]:
    """Stems of the -ing words that name an action, not a posture ("reading", not "sitting"):
    what someone does outranks where they are when tags break a tie."""
    return {
        _stem(w)
        for w in normalise(text).split()
        if w.endswith("ing") and w not in CUE_WORDS and w not in _NOT_ACTIONS
    }


# -ing words that say how or what, not what someone does.
_NOT_ACTIONS = frozenset(
    {"looking", "wearing", "feeling", "being", "having", "getting", "going", "doing", "making",
     "trying", "coming", "something", "nothing", "everything", "morning", "evening", "ceiling",
     "building", "clothing", "ring", "king", "thing", "wing", "spring", "string", "posing"}
)  # fmt: skip


def _stem(word: str) -> str:
    for suffix in ("ing", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "at",
        "with",
        "her",
        "his",
        "their",
        "my",
        "him",
        "she",
        "he",
        "they",
        "it",
        "is",
        "are",
        "be",
        "while",
        "for",
        "from",
        "by",
        "up",
        "down",
        "girl",
        "boy",
        "woman",
        "man",
        "person",
        "character",
        "pose",
        "posing",
    ]
)
