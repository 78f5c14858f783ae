"""Word lists shared by the synthetic tasks and the pretraining corpus."""

from __future__ import annotations

MALE_NAMES = ("john", "james", "bob", "tom", "mike", "david", "paul", "mark", "peter", "jack", "sam", "ben")
FEMALE_NAMES = (
    "mary",
    "anna",
    "lisa",
    "sarah",
    "kate",
    "emma",
    "julia",
    "laura",
    "susan",
    "helen",
    "alice",
    "rose",
)
NAMES = MALE_NAMES + FEMALE_NAMES
PLACES = ("store", "park", "school", "office", "beach", "garden", "market", "station", "library", "kitchen")
OBJECTS = ("ball", "book", "drink", "apple", "key", "letter", "pen", "cup", "hat", "bag")
NUMBERS = tuple(str(i) for i in range(100))
WORDS = (
    "red", "blue", "green", "cat", "dog", "bird", "fish", "tree", "river", "stone", "cloud", "moon",
    "sun", "star", "house", "door", "road", "car", "boat", "train", "bread", "milk", "salt", "snow",
    "rain", "wind", "fire", "gold", "iron", "wood", "glass", "paper", "chair", "table", "lamp", "clock",
    "horse", "mouse", "lion", "bear", "wolf", "frog", "rice", "corn", "leaf", "rock", "hill", "lake",
)  # fmt: skip
POSITIVE = ("good", "great", "wonderful", "excellent", "lovely", "amazing", "nice", "fantastic")
NEGATIVE = ("bad", "terrible", "awful", "horrible", "poor", "boring", "ugly", "dreadful")
REVIEWED = ("movie", "film", "meal", "show", "song", "game", "trip", "play")
ARG_NAMES = (
    "alpha", "beta", "gamma", "delta", "size", "count", "name", "value", "index", "path", "mode", "data",
    "node", "item", "left", "right", "start", "end", "width", "height",
)  # fmt: skip
FUNCTION_NAMES = ("load", "save", "run", "parse", "build", "merge", "split", "check", "draw", "send")
SYMBOLS = ("(", ")", ",", ":", ".", "=", "+", "?", "|", "->")
GLUE = (
    "when", "and", "went", "to", "the", "a", "gave", "then", "handed", "were", "at", "met", "later",
    "is", "was", "are", "he", "she", "said", "that", "because", "after", "meeting", "man", "woman",
    "boy", "girl", "his", "her", "likes", "from", "year", "war", "lasted", "came", "numbers", "count",
    "up", "comes", "before", "next", "true", "false", "not", "or", "gives", "it", "so", "plus",
    "equals", "what", "sum", "of", "reverse", "backward", "forward", "review", "sentiment",
    "positive", "negative", "i", "feel", "happy", "sad", "felt", "this", "def", "param", "return",
    "takes", "arguments", "function", "uses", "answer", "copy", "again", "list", "say", "in", "order",
    "we", "add", "get", "saw", "very", "really", "loved", "hated", "with", "bring", "there", "also",
    "on", "back",
)  # fmt: skip


def vocabulary() -> list[str]:
    """Every word the tasks and the corpus use, in a fixed order, without repeats."""
    groups = (GLUE, SYMBOLS, NAMES, PLACES, OBJECTS, NUMBERS, WORDS, POSITIVE, NEGATIVE, REVIEWED)
    groups += (ARG_NAMES, FUNCTION_NAMES)
    return list(dict.fromkeys(w for group in groups for w in group))
