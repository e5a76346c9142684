"""artjax: art-style classification of paintings with JAX/Flax."""
