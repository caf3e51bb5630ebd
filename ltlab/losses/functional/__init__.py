"""Pure loss maths: tensors in, tensors out, randomness passed in.

Split in two modules so baselines and the seed methods can be read apart; everything is
re-exported here, so ``ltlab.losses.functional.<name>`` is the one address.
"""
from .baselines import *  # noqa: F401,F403
from .seed import *  # noqa: F401,F403
from .baselines import __all__ as _b
from .seed import __all__ as _s

__all__ = list(_b) + list(_s)
