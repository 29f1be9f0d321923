from torch import Tensor


def preference_weights(pref_vector: Tensor | None, like: Tensor, default: float) -> Tensor:
    """
    Returns the preference weights ``[m]`` for the ``m`` rows of ``like`` (a matrix or its Gramian),
    on its device and dtype: ``pref_vector``, or ``default`` for each row when it is ``None``.
    """

    m = like.shape[0]
    if pref_vector is None:
        return like.new_full((m,), default)
    if pref_vector.shape[0] != m:
        raise ValueError(
            f"Parameter `pref_vector` should have one value per row of the matrix ({m}). Found "
            f"{pref_vector.shape[0]} values."
        )
    return pref_vector.to(dtype=like.dtype, device=like.device)
