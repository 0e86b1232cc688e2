"""What every settings module reads first: the project root, the environment
(.env merged in), the profile, and the values the others derive from."""

from pathlib import Path

import environ

from queueworks.core import profiles

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env is optional; real deployments set the environment directly.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

PROFILE = env("DJANGO_PROFILE", default=profiles.PRODUCTION)
DEVELOPMENT = PROFILE == profiles.DEVELOPMENT
# Installs apps/testing (fault-injection and benchmark tasks): the test suite,
# the live test system and the benchmarks only; production refuses it.
TEST_SUPPORT = env.bool("DJANGO_TEST_SUPPORT", default=False)
# One explicit zone for Django and for beat's crontabs, so office hours follow
# local time across DST changes.
TIME_ZONE = env("TIME_ZONE", default="Europe/Berlin")
