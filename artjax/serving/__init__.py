"""What applications receive from a trained run.

- `exported`: a SavedModel and a TFLite file with the preprocessing, the views and every signature
  an application needs inside (probabilities, embedding, Grad-CAM), converted with jax2tf.
- `collection`: the index of a collection's paintings (embeddings, artists, genres, thumbnails)
  beside an export, and its nearest neighbours. NumPy and Pillow only, so a server that holds
  TensorFlow alone can use it.
"""
