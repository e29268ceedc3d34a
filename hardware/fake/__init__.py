"""In-process fakes of devices and vendor libraries, shipped with the package so dry runs and
tests work without hardware. Each speaks the real protocol or API of what it stands in for."""
