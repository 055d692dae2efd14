"""Normalizing flows: our own transforms (``TransformModule`` subclasses), their registry, and the
flow density model (``models.flows.density``, registered as ``flow``).

Importing this package fills :data:`TRANSFORMS` (each family file registers its transforms).
Directions follow Pyro: ``_call`` base -> data, ``_inverse`` data -> base.
"""
from models.flows.amortized_householder import AmortizedHouseholder  # registers amortized_householder
from models.flows.amortized_planar import AmortizedPlanar  # registers amortized_planar
from models.flows.amortized_sylvester import AmortizedSylvester  # registers amortized_sylvester_*
from models.flows.autoregressive import AffineAutoregressive, ConditionalAffineAutoregressive
from models.flows.base import FlowTransform, NoClosedFormInverse
from models.flows.coupling import AdditiveCoupling, AffineCoupling, ConditionalAffineCoupling
from models.flows.householder import Householder
from models.flows import dequantization, multiscale  # noqa: F401  (register the image transforms of flows II)
from models.flows.linear import ElementwiseAffine, LULinear
from models.flows.made import MADE
from models.flows.permutation import Permute
from models.flows.planar import Planar
from models.flows.preprocessing import Logit, Rescale
from models.flows.radial import Radial
from models.flows.registry import TRANSFORMS, TransformSpec, register_transform, transform_spec
from models.flows.sylvester import Sylvester

__all__ = [
    "TRANSFORMS", "AdditiveCoupling", "AffineAutoregressive", "AffineCoupling", "ConditionalAffineAutoregressive",
    "ConditionalAffineCoupling", "ElementwiseAffine", "FlowTransform", "Householder", "LULinear", "Logit", "MADE",
    "NoClosedFormInverse", "Permute", "Planar", "Radial", "Rescale", "Sylvester", "TransformSpec",
    "register_transform", "transform_spec",
]
