"""Offline analyses: semantic-scale measurement of a trained detector and
its report."""
