"""CVXPY atoms for imaging: 2-D convolution and sampled Fourier coefficients.

Both are affine atoms that every CVXPY solver accepts (their graph implementations hand
the solver an assembled matrix); cvxprox's reductions keep them as FFT-based operators.
"""

from cvxprox.atoms.conv2d import conv2d
from cvxprox.atoms.fourier import fourier_sample

__all__ = ["conv2d", "fourier_sample"]
