"""Words the rule planner understands, as data: numbers, postures, actions, fillers.

Each table maps what people type to the canonical word the pose bank and the tools use.
"""

from __future__ import annotations

from posebank.lexicon import CUE_WORDS, NAMED, PLACE, POSTURE_CUES, VERB, spelled

UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
        "eighty": 80, "ninety": 90}  # fmt: skip
# Multi-word quantities, longest first so "half a dozen" wins over "a dozen".
QUANTITY_PHRASES = {
    "half a dozen": 6, "a dozen": 12, "dozen": 12, "a couple of": 2, "a couple": 2,
    "couple of": 2, "couple": 2, "a pair of": 2, "a pair": 2, "pair of": 2, "a few": 3,
    "few": 3, "several": 3, "a handful of": 5, "a handful": 5, "handful of": 5, "a single": 1,
    "single": 1, "twice": 2, "thrice": 3, "a hundred": 100, "hundred": 100,
}  # fmt: skip
# Nouns that follow a count ("5 variations"); consumed with it.
COUNT_NOUNS = {
    "variation", "variations", "variant", "variants", "version", "versions", "image", "images",
    "picture", "pictures", "pic", "pics", "photo", "photos", "drawing", "drawings", "shot",
    "shots", "copy", "copies", "take", "takes", "option", "options", "render", "renders",
    "illustration", "illustrations", "time", "times", "more", "each", "of", "them", "sketch",
    "sketches", "portraits", "portrait", "ones", "one", "x", "per", "character", "apiece",
}  # fmt: skip

ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5,
    "6th": 6, "7th": 7, "8th": 8, "9th": 9, "10th": 10, "last": -1,
}  # fmt: skip


def _posture_cues() -> tuple[dict[str, str], dict[str, str]]:
    """Posture words and phrases from the pose bank's lexicon: its named positions and verbs,
    and the body-position phrases among its places ("on her knees", not "on the floor", which
    stays in the scene)."""
    words: dict[str, str] = {}
    phrases: dict[str, str] = {}
    for posture, cues in POSTURE_CUES.items():
        body = [c for c in cues.get(PLACE, ()) if c.split()[1:2] in (["her"], ["his"], ["their"])]
        for cue in (*cues.get(NAMED, ()), *cues.get(VERB, ()), *body):
            (phrases if " " in cue else words).setdefault(cue, posture)
    return words, phrases


_LEXICON_WORDS, _LEXICON_PHRASES = _posture_cues()
# The planner's own additions: forms the lexicon does not list as verbs.
POSTURE_WORDS = {
    **_LEXICON_WORDS,
    "upright": "standing", "sat": "sitting", "laying": "lying", "reclining": "lying",
    "hopping": "jumping", "squat": "crouching",
}  # fmt: skip
# Phrases that name a posture in several words.
POSTURE_PHRASES = {
    **_LEXICON_PHRASES,
    "laying down": "lying", "lying on her back": "lying", "lying on his back": "lying",
    "mid air": "jumping", "mid-air": "jumping", "in the air": "jumping",
    "on all fours": "crouching", "kneeling down": "kneeling", "kneel down": "kneeling",
    "crouching down": "crouching", "crouched down": "crouching", "squatting down": "crouching",
    "squatted down": "crouching", "sat down": "sitting", "lay down": "lying",
    "stood up": "standing", "standing tall": "standing", "jumping for joy": "jumping",
}  # fmt: skip

ACTION_WORDS = {
    "reading": "reading", "read": "reading", "reads": "reading", "waving": "waving",
    "wave": "waving", "waves": "waving", "dancing": "dancing", "dance": "dancing",
    "dances": "dancing", "fighting": "fighting", "fight": "fighting", "punching": "fighting",
    "kicking": "fighting", "pointing": "pointing", "point": "pointing", "points": "pointing",
    "stretching": "stretching", "stretch": "stretching", "thinking": "thinking",
    "pondering": "thinking", "praying": "praying", "pray": "praying", "eating": "eating",
    "eat": "eating", "drinking": "drinking", "drink": "drinking", "singing": "singing",
    "sing": "singing", "sleeping": "sleeping", "asleep": "sleeping", "sleep": "sleeping",
    "napping": "sleeping", "cheering": "cheering", "cheer": "cheering", "saluting": "saluting",
    "salute": "saluting", "bowing": "bowing", "bow": "bowing", "writing": "writing",
    "hugging": "hugging", "hug": "hugging", "posing": "posing", "relaxing": "relaxing",
    "relaxed": "relaxing", "studying": "reading", "meditating": "meditating",
    "yoga": "stretching", "leaning": "leaning", "leans": "leaning", "celebrating": "cheering",
    "victory": "cheering",
}  # fmt: skip
ACTION_PHRASES = {
    "peace sign": "peace sign", "v sign": "peace sign", "arms crossed": "arms crossed",
    "crossed arms": "arms crossed", "arms folded": "arms crossed", "hands on hips": "hands on hips",
    "hand on hip": "hands on hips", "looking back": "looking back", "from behind": "back view",
    "back view": "back view", "side view": "side view", "from the side": "side view",
    "arms up": "arms raised", "arms raised": "arms raised", "hands up": "arms raised",
    "looking up": "looking up", "fighting stance": "fighting", "battle stance": "fighting",
    "reading a book": "reading", "reading the book": "reading", "reading a manga": "reading",
    "reading manga": "reading", "reading a novel": "reading", "with a book": "reading",
    "holding a book": "reading", "cross-legged": "cross-legged", "cross legged": "cross-legged",
}  # fmt: skip
# An action that implies its posture when none is said ("yuki sleeping" lies down).
ACTION_POSTURE = {"sleeping": "lying", "bowing": "standing", "saluting": "standing"}

RANDOM_POSE_PHRASES = (
    "random pose", "any pose", "whatever pose", "random poses", "surprise me", "pose at random",
    "a random pose", "different poses", "various poses", "random posture", "poses at random",
    "randomly posed", "random position",
)  # fmt: skip

ALL_PHRASES = (
    "every character", "every single character", "all characters", "all the characters",
    "all my characters", "all of my characters", "all of the characters", "all of them",
    "each character", "each of them", "each of my characters", "everyone", "everybody",
    "every one of them", "the whole cast", "whole cast", "the entire cast", "entire cast",
    "the whole roster", "all my ocs", "all of my ocs", "every oc", "all the girls",
    "every girl", "all the ocs", "the whole library", "all of 'em", "all my girls",
    "the whole crew", "all the gang", "the whole gang", "whole gang",
)  # fmt: skip

DRAW_VERBS = {
    "draw", "make", "generate", "create", "paint", "sketch", "render", "produce", "give",
    "show", "do", "want", "need", "illustrate", "doodle", "imagine", "get", "gen",
}  # fmt: skip

# Words that carry no scene meaning; dropped from the edges of a leftover span.
FILLERS = {
    "i", "i'd", "id", "i'm", "im", "me", "us", "we", "please", "pls", "plz", "can", "could",
    "would", "will", "you", "like", "love", "some", "of", "a", "an", "the", "and", "her",
    "his", "him", "them", "their", "she", "he", "it", "its", "is", "are", "be", "being",
    "pose", "poses", "posed", "doing", "while", "who", "that", "this", "these", "those", "now",
    "just", "quick", "quickly", "also", "another", "more", "for", "to", "let's", "lets", "try",
    "how", "about", "okay", "ok", "hey", "hi", "then", "so", "but", "again", "same", "one",
    "ones", "thing", "something", "kind", "sort", "maybe", "really", "very", "up", "out",
    "with", "in", "at", "on", "by", "as", "my", "our", "your", "variation", "variations",
    "version", "versions", "picture", "pictures", "image", "images", "pic", "pics", "drawing",
    "drawings", "art", "artwork", "illustration", "illustrations", "shot", "shots", "time",
    "times", "each", "per", "character", "characters", "position", "posture", "way", "style",
    "all", "every", "both", "instead", "please.", "thanks", "thank", "too", "here", "there",
    "what", "where", "when", "go", "ahead", "put", "have", "has", "had", "got", "let", "see",
    "new", "different", "other", "else", "yes", "no", "not", "don't", "dont", "redo", "repeat",
    "reroll", "re-roll", "re-do", "similar", "previous", "last", "before", "together",
    # questions ("could you show me what rin would look like ...")
    "look", "looks", "possible", "chance", "any", "does", "did", "do", "wonder",
    "whether", "if", "idea", "mind", "able", "wondering", "curious",
    # chat slang
    "u", "ur", "gimme", "lemme", "wanna", "gonna", "lol", "lmao", "haha", "thx", "ty", "omg",
    "ya", "yeah", "hello", "sure", "btw", "rn", "tho", "k", "xd", "uwu", "hmm", "um", "uh",
} | DRAW_VERBS  # fmt: skip

# Words that shape a request into clauses; never names, never scene words.
CLAUSE_BREAKS = {",", ";", ":", ".", "!", "?", "(", ")", "[", "]", "—", "–", "-", "and", "then",
                 "also", "plus", "&"}  # fmt: skip
CLAUSE_BREAK_PHRASES = ("and then", "after that", "and after that", "as well as", "and also")
# A clause that starts with these replaces what was said before it ("sakura, no wait, yuki").
CORRECTION_PHRASES = (
    "no wait", "wait no", "wait", "i mean", "sorry i mean", "i meant", "sorry", "actually",
    "actually no", "scratch that", "make that", "make it", "or rather", "correction",
    "oops", "no no", "nope", "change that to", "change it to", "let's say", "lets say",
)  # fmt: skip
# Words before what is not wanted: "not standing", "without the umbrella", "no hat".
NEGATORS = ("not", "without", "no", "don't", "dont", "never", "minus", "instead of", "do not",
            "rather than", "but not", "no more", "lose the", "remove the", "take off the",
            )  # fmt: skip
NEGATED_VERBS = {"add", "include", "want", "show", "put", "need", "give", "draw", "have", "use",
                 "wear", "wearing"}  # fmt: skip
# Words after a whole-cast phrase that leave someone out ("everyone except rin").
EXCEPT_PHRASES = ("except", "except for", "but", "apart from", "other than", "excluding",
                  "besides", "save for", "aside from", "minus", "without", "but not", "not",
                  )  # fmt: skip
# A clause with these applies to every character of the request ("both at the beach", "2 each").
SHARED_WORDS = {"both", "each", "apiece", "all", "everyone", "together"}
# Words that point at the characters of the previous turn.
PRONOUNS = {"her", "him", "them", "both", "they", "she", "he", "it", "that", "those", "these",
            "this", "'em", "em"}  # fmt: skip
CLAUSE_WORDS = CLAUSE_BREAKS | {w for p in (*CORRECTION_PHRASES, *NEGATORS) for w in p.split()}

SCENE_PREPOSITIONS = {
    "in", "at", "to", "on", "under", "by", "near", "inside", "outside", "during", "wearing", "with",
    "beside", "behind", "through", "into", "across", "among", "against", "over", "above",
    "below", "around", "underneath", "in front of", "before", "after", "from", "without",
}  # fmt: skip
# "next to her", "beside him": where one character is relative to another, not a scene.
RELATIONS = ("next to", "beside", "behind", "near", "facing", "with", "in front of", "close to",
             "alongside", "holding hands with", "looking at", "hugging")  # fmt: skip
OBJECT_PRONOUNS = ("her", "him", "them", "each other", "one another")

# Scene words that add to a place rather than replace it ("same but at night" keeps the cafe).
ATMOSPHERE = {
    "night", "nighttime", "day", "daytime", "morning", "evening", "afternoon", "noon",
    "midnight", "sunset", "sunrise", "dusk", "dawn", "twilight", "moonlight", "sunlight",
    "rain", "rainy", "snow", "snowy", "fog", "foggy", "storm", "mist", "winter", "summer",
    "autumn", "fall", "spring", "golden", "hour", "light", "lighting", "dark", "weather",
}  # fmt: skip
CLOTHING = {
    "kimono", "yukata", "dress", "uniform", "swimsuit", "bikini", "pajamas", "pyjamas",
    "hoodie", "outfit", "clothes", "suit", "coat", "jacket", "armor", "armour", "costume",
    "hat", "glasses", "sweater", "skirt", "shirt", "jeans", "gown", "apron", "scarf", "boots",
    "maid", "wearing", "cosplay", "tuxedo", "cape", "robe", "sundress", "overalls",
}  # fmt: skip
PLACE_PREPOSITIONS = {
    "in", "at", "on", "under", "inside", "outside", "by", "near", "beside", "behind",
    "through", "to", "across", "into", "around", "underneath", "among", "along",
}  # fmt: skip

# Words worth correcting when mistyped: only long ones, so short names and fillers stay as typed.
SPELLED_WORDS = frozenset(
    word
    for word in (*POSTURE_WORDS, *ACTION_WORDS, *CUE_WORDS)
    if len(word) >= 6 and " " not in word
)


def known_spelling(word: str) -> str:
    """The vocabulary word `word` is a typo of ("sittin", "standng"), else `word` itself."""
    return spelled(word, SPELLED_WORDS)
