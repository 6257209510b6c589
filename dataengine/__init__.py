"""The data engine: real BlazePose on rendered Anny bodies that move with ground-truth motion.

Optional part of Blaze2Cap (``make synth-install`` adds ``anny``; ``bpy`` and ``mediapipe`` are
already runtime dependencies). Modules follow the pipeline stages:

* :mod:`dataengine.bodies`  Anny bodies (shape sampling) and the retarget of TotalCapture global
  rotations onto them, with the ground truth of the posed body;
* :mod:`dataengine.motion`  motion sources: TotalCapture ground truth and BVH files (parsed
  and retargeted onto TC global rotations in numpy);
* :mod:`dataengine.cameras` the 8 real TotalCapture calibrations and random views;
* :mod:`dataengine.render`  the headless ``bpy`` Workbench scene (the only module that imports
  ``bpy``);
* :mod:`dataengine.engine`  the clip loop: seed -> manifest entry -> frames -> BlazePose ->
  one file per clip, resumable, several worker processes.

``engine/`` never imports this package.
"""
