"""Video capture: the first stage of "video in, animated rig out".

Modules follow the pipeline, and each is imported on its own so ``import capture`` stays light
(MediaPipe is imported only when BlazePose runs):

* ``capture.video``      open a video with OpenCV: checked errors, ``VideoInfo``, RGB frames
* ``capture.blazepose``  MediaPipe BlazePose -> (F, 33, 10) landmarks, streamed to a .npy file
* ``capture.preview``    side-by-side preview .mp4: video + 2D landmarks | 3D skeleton
* ``capture.samples``    fetch the BSD-3 sample videos (Sports2D, Pose2Sim) into a user cache

Only this package imports ``cv2`` and ``mediapipe``; nothing here imports ``bpy``.
"""
