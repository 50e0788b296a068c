"""The reco-engine operator: one ``RecoEngine`` resource becomes a running engine.

Thin kopf handlers (:mod:`reco_operator.handlers`) over pure builders
(:mod:`reco_operator.builders`: spec to manifests) and a spec model
(:mod:`reco_operator.spec`) from which the CRD is generated (:mod:`reco_operator.crd`).
Of the engine it imports only the settings model, so that the CRD's engine section and the
engine can never disagree.
"""

from __future__ import annotations

from reco import __version__

GROUP = "recoengine.io"
VERSION = "v1alpha1"
KIND = "RecoEngine"
PLURAL = "recoengines"
SINGULAR = "recoengine"
SHORT_NAMES = ("reco",)
FIELD_MANAGER = "reco-operator"

__all__ = [
    "FIELD_MANAGER",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "__version__",
]
