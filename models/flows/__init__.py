"""Normalizing flows: our own transforms (``TransformModule`` subclasses), their registries, and the
flow density model (``models.flows.density``, registered as ``flow``).

Importing this package imports every module in it, so each file's registrations run: transforms
(:data:`TRANSFORMS`, ``models.flows.registry``), VAE flow families (``models.flows.vae_families``) and
flow-density architectures (``models.flows.architecture_registry``). A new flow file in this folder
is therefore picked up with no edit anywhere else (README, "How to extend: a new flow layer").
Directions follow Pyro: ``_call`` base -> data, ``_inverse`` data -> base.
"""
import importlib
import pkgutil

from models.flows.amortized_householder import AmortizedHouseholder
from models.flows.amortized_planar import AmortizedPlanar
from models.flows.amortized_sylvester import AmortizedSylvester
from models.flows.autoregressive import AffineAutoregressive, ConditionalAffineAutoregressive
from models.flows.base import FlowTransform, NoClosedFormInverse
from models.flows.coupling import AdditiveCoupling, AffineCoupling, ConditionalAffineCoupling
from models.flows.householder import Householder
from models.flows.linear import ElementwiseAffine, LULinear
from models.flows.made import MADE
from models.flows.permutation import Permute
from models.flows.planar import Planar
from models.flows.preprocessing import Logit, Rescale
from models.flows.radial import Radial
from models.flows.registry import TRANSFORMS, TransformSpec, register_transform, transform_spec
from models.flows.sylvester import Sylvester

for _module in pkgutil.iter_modules(__path__):  # every family file registers what it defines
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "TRANSFORMS", "AdditiveCoupling", "AffineAutoregressive", "AffineCoupling", "ConditionalAffineAutoregressive",
    "ConditionalAffineCoupling", "ElementwiseAffine", "FlowTransform", "Householder", "LULinear", "Logit", "MADE",
    "NoClosedFormInverse", "Permute", "Planar", "Radial", "Rescale", "Sylvester", "TransformSpec",
    "register_transform", "transform_spec",
]
