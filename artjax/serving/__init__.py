"""What applications receive from a trained run, in one place:

- `inference`: `Predictor`, a run's (or a CV bag's) probabilities of image files;
- `attribution`: Grad-CAM and integrated gradients, `Explainer`;
- `exported`: a SavedModel and a TFLite file with the preprocessing, the views and every signature
  an application needs inside (probabilities, embedding, Grad-CAM), converted with jax2tf;
- `collection`: the index of a collection beside an export and its nearest neighbours;
- `records`, `uploads`, `batching`, `app`: the gallery service (`python -m artjax.serve`), which
  imports TensorFlow, NumPy, Pillow and FastAPI only: no JAX.
"""
