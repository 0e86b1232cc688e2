"""Static files (admin, Swagger UI assets) served by the app itself."""

import os

from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, serving from the apps' static directories (WHITENOISE_USE_FINDERS)
    without warning when STATIC_ROOT was never collected."""

    def add_files(self, root, prefix=None):
        if root and not os.path.isdir(root):
            return
        super().add_files(root, prefix)
