"""One module per backend adapter; each implements an interface of ``reco.ports``."""
