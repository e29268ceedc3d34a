"""Hardware abstraction for force-sensing arms, F/T sensors, teleop and safety (installed as
``robopref.hardware``). Knows nothing of learning: it never imports a reward, refiner or loop."""
