"""The zoo wing: small models trained here on the built-in tasks (and the user's own), so that
nothing has to be downloaded; cached on disk in the Hugging Face directory format.

- cache.py: what to train for a task and seed, the recipes, the cache (`get_model`,
  `zoo_info`, `build_untrained`, `cache_root`);
- training.py: the training problems, loop and the word-level tokenizer.
"""

from experiments.zoo.cache import (ACCEPT, RECIPE_LADDER, RECIPES, ZOO_VERSION, build_tokenizer, build_untrained,
                                   cache_name, cache_root, get_model, is_trained, model_dir, train_model,
                                   zoo_info)
from experiments.zoo.training import Recipe, answer_token_id, leaning_factual_data

__all__ = ["ACCEPT", "RECIPES", "RECIPE_LADDER", "ZOO_VERSION", "Recipe", "answer_token_id", "build_tokenizer",
           "build_untrained", "cache_name", "cache_root", "get_model", "is_trained", "leaning_factual_data", "model_dir",
           "train_model", "zoo_info"]
