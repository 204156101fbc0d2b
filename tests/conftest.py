import os

from hypothesis import settings

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The OCPP bench fixtures (a development CSMS and a daemon subprocess) for every test file.
from tests.ocpp_harness import bench, bench201, csms, csms201  # noqa: E402, F401
