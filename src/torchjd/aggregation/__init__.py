"""Aggregators reduce a Jacobian matrix to an update vector; weightings give them their weights."""

from ._aggregator_bases import Aggregator, GramianWeightedAggregator, WeightedAggregator
from ._aligned_mtl import AlignedMTL, AlignedMTLWeighting
from ._cagrad import CAGrad, CAGradWeighting
from ._config import ConFIG
from ._cr_mogm import CRMOGM, CRMOGMWeighting
from ._db_mtl import DBMTL
from ._excess_mtl import ExcessMTL, ExcessMTLWeighting
from ._fairgrad import FairGrad, FairGradWeighting
from ._graddrop import GradDrop
from ._gradnorm import GradNorm
from ._gradvac import GradVac, GradVacWeighting
from ._imtl_g import IMTLG, IMTLGWeighting
from ._krum import Krum, KrumWeighting
from ._mgda import MGDA, MGDAWeighting
from ._moco import MoCo
from ._modo import MoDo, MoDoWeighting
from ._nash_mtl import NashMTL
from ._pcd import PCD, PCDWeighting
from ._pcgrad import PCGrad, PCGradWeighting
from ._random import Random, RandomWeighting
from ._sdmgrad import SDMGrad, SDMGradWeighting
from ._trimmed_mean import TrimmedMean
from ._weighting_bases import Weighting

__all__ = [
    "Aggregator",
    "AlignedMTL",
    "AlignedMTLWeighting",
    "CAGrad",
    "CAGradWeighting",
    "ConFIG",
    "CRMOGM",
    "CRMOGMWeighting",
    "DBMTL",
    "ExcessMTL",
    "ExcessMTLWeighting",
    "FairGrad",
    "FairGradWeighting",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "GradVacWeighting",
    "GramianWeightedAggregator",
    "IMTLG",
    "IMTLGWeighting",
    "Krum",
    "KrumWeighting",
    "MGDA",
    "MGDAWeighting",
    "MoCo",
    "MoDo",
    "MoDoWeighting",
    "NashMTL",
    "PCD",
    "PCDWeighting",
    "PCGrad",
    "PCGradWeighting",
    "Random",
    "RandomWeighting",
    "SDMGrad",
    "SDMGradWeighting",
    "TrimmedMean",
    "WeightedAggregator",
    "Weighting",
]
