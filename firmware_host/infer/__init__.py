"""Inference: the LiteRT interpreter and its delegates, the model-output contract and sidecars, pre- and
post-processing, the age/gender predictor, the graph's ops and the facts of the machine it runs on."""
