"""selfplay: reasoning training data by self-play (pose, solve, verify, pair, train, evaluate)."""
__version__ = "0.2.0"
