"""Pure-torch scoring core: pixel measures, MC-dropout and multi-head (MADBAL) engines,
region aggregation.

No Ray imports here: the same code runs in actors, jobs, notebooks and tests.
"""
from rayal.scoring.aggregate import (frame_reduce, region_classwise_max, region_dominant_class,
                                     region_pixel_counts, region_reduce)
from rayal.scoring.committee import CommitteeScorer
from rayal.scoring.embeddings import frame_embeddings, region_embeddings
from rayal.scoring.engine import MCDropoutScorer, PixelScores
from rayal.scoring.maturity import MultiHeadScorer, image_edges, js_divergence, maturity_score
from rayal.scoring.measures import (area_disagreement, bald, entropy, least_confidence, margin,
                                    ovr_entropy, variance, vote_entropy)

__all__ = [
    "CommitteeScorer", "MCDropoutScorer", "MultiHeadScorer", "PixelScores", "area_disagreement", "bald", "entropy",
    "frame_embeddings", "frame_reduce", "image_edges", "js_divergence", "least_confidence",
    "margin", "maturity_score", "ovr_entropy",
    "region_classwise_max", "region_dominant_class", "region_embeddings", "region_pixel_counts",
    "region_reduce", "variance", "vote_entropy",
]
