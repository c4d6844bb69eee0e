"""Files and bytes, below every layer that stores something: the one atomic writer, the one sha256 helper
and digest type, the one verified HTTP download stream (weights, datasets, DIV2K and VGG all use them), and
the one way to open a user's file (`regular`: regular files only, said precisely otherwise).

Nothing here knows about models, images or manifests, so `weights`, `data`, `imageio` and `train` can all
import it without reaching into each other.
"""
