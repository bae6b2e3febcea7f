"""One person's motion as FBX for Unity and Unreal, made by Blender from the GLB.

:func:`write_fbx` runs Blender's Python module (``bpy``, the optional extra
``pip install "wbcap[blender]"``: bpy 5.0.1, Python 3.11 only, about 1 GB) in a subprocess of
``sys.executable`` with the script :mod:`wbcap.export.blender_fbx`: bpy is large, keeps global
state and prints a lot, so it never loads into wbcap's process and its output goes to a log file (in
the temporary folder; kept only when Blender fails).
Blender imports the GLB of :func:`wbcap.export.gltf.write_glb` with its glTF importer and writes
FBX 7.4 binary with its FBX exporter (``io_scene_gltf2`` and ``io_scene_fbx`` bundled with
Blender 5.0.1). Why FBX through Blender: no maintained Python FBX writer exists (Autodesk's FBX
SDK is C++ with its own licence), and Blender's exporter is the one Unity's and Unreal's
documentation and users rely on for Blender characters.

What the FBX holds
------------------
* A ``Null`` root node ``Armature`` with identity transform, its 55 ``LimbNode`` joints named as
  :data:`wbcap.export.rig.JOINT_NAMES_55`, parented as SMPL-X; their bind pose is the shaped
  T-pose with identity joint orientations, so a joint's local animated rotation is the SMPL-X
  axis-angle of that joint (as FBX Euler XYZ degrees) and the pelvis' local translation is
  ``rest_joints[0] + transl``.
* The mesh ``<track>_body`` (:func:`wbcap.export.gltf.mesh_node_name`; identity transform, a child of ``Armature``), skinned by the joints (the
  GLB's 4 weights per vertex), with the GLB's morph targets as blend shapes: ``expression_00``
  ... and, for an exact GLB, ``exact_row_00000`` ... (blend-shape weights are FBX percent: 100 x
  the coefficient).
* One take (``AnimationStack``) named after the clip, keyed on every row: key ``k`` at the
  GLB's time ``times[k]`` (seconds on the source's clock, so the take may start after 0 s),
  sampled at the clip's rate (FBX ``TimeMode``: the matching standard rate such as 25 or
  29.97 fps, else ``CustomFrameRate``). A clip whose first row lies between two of its frames
  (``--start 0.1 --every 2`` of a 10 fps video: rows at 0.1, 0.3, ... s) is written at a
  multiple of its rate with a key every few frames instead (there 10 fps, a key every 2 frames:
  :func:`~wbcap.export.blender_fbx.key_step`), so its keys keep the rows' times; so is a clip
  whose rate is not a whole number but has a whole multiple (``--every 3`` of a 10 fps video:
  10 fps, a key every 3 frames), which Blender's FBX importer then places right.
  ``GlobalSettings``' ``TimeSpanStart`` / ``TimeSpanStop`` (the FBX SDK's default timeline) span
  the take too (Blender's exporter alone writes 0 and 1 s).
* World: the GLB's y-up frame (metres; x right, y up, the body faces +z). The file says so in
  ``GlobalSettings`` (``UpAxis`` +Y, ``FrontAxis`` +Z, ``CoordAxis`` +X, ``UnitScaleFactor``
  100: one unit is a metre).

Not written: the source camera (it stays in the GLB; the FBX holds the character only) and the
GLB's extras (metadata). Size: the exact option adds about 130 kB per row (Blender writes one
blend shape per row, deflate-compressed; measured 8.9 MB for 60 rows against 1.2 MB without);
Blender takes about 1.5 s for a short clip and 9 s for 1,800 rows.

Blender options
---------------
glTF import (:data:`wbcap.export.blender_fbx.GLTF_IMPORT_OPTIONS`):

* ``bone_heuristic='BLENDER'``: bones keep the glTF joints' axes (identity rest rotations in
  the GLB), which gives the identity joint orientations above; the other heuristics turn
  bones towards their children and would put those turns into every FBX rotation.
* ``disable_bone_shape=True``: no helper "Icosphere" display mesh (it would be exported).
* ``import_shading='NORMALS'``: the GLB's vertex normals (a smooth body).
* ``merge_vertices=False``: the GLB's vertices, one to one, in order.
* ``import_scene_extras=False``: the GLB's metadata stays out (it would not be exported).

FBX export (:data:`wbcap.export.blender_fbx.FBX_OPTIONS`):

* ``axis_forward='-Z'``, ``axis_up='Y'`` with ``use_space_transform=True``: y up, the
  exporter's standard conversion of Blender's z up. Blender's ``bake_space_transform``
  ("Apply Transform") is not used: its own documentation calls it experimental and broken with
  armatures and animations. Instead :mod:`wbcap.export.blender_fbx` turns the armature and mesh
  data back to y up under objects turned +90 degrees about x, which the conversion cancels: the
  root nodes have identity rotation, so Unity shows no -90 degree x rotation on the character.
* ``apply_unit_scale=True``, ``apply_scale_options='FBX_SCALE_ALL'``, ``global_scale=1``:
  metres stated as ``UnitScaleFactor=100`` with every node at scale 1 (the default
  ``FBX_SCALE_NONE`` puts a scale of 100 on the root node instead); Unity imports it at its
  size ("Convert Units", "1m (File)"); Unreal converts it to centimetres with "Convert Scene Unit".
* ``object_types={'ARMATURE', 'MESH'}``: the character only.
* ``add_leaf_bones=False``: no ``<joint>_end`` bones; the skeleton is exactly the 55 SMPL-X joints.
* ``primary_bone_axis='Y'``, ``secondary_bone_axis='X'`` (Blender's defaults): with the
  ``BLENDER`` bone heuristic they map each bone back to its glTF joint axes (identity joint
  orientations); any other pair would rotate every joint's frame.
* ``use_armature_deform_only=False``: all 55 joints, also any that weigh on no vertex.
* ``armature_nodetype='NULL'`` and the armature object named ``Armature``: Unity shows an
  ``Armature`` object above ``pelvis``; Unreal (4.24 and later) drops a Blender root node named
  ``Armature`` instead of adding it as an extra root bone, so ``pelvis`` is the root bone.
* ``bake_anim=True`` with ``bake_anim_step=1`` on a scene whose rate is the clip's (fractional
  rates as ``fps / fps_base``) and whose frame range is the keys': one sample per row, on the
  rows' own times (at a multiple ``m`` of the clip's rate, ``bake_anim_step=m``: see above);
  ``bake_anim_simplify_factor=0``: no key dropped (the default 1.0 drops keys that change little);
  ``bake_anim_force_startend_keying=True`` and ``bake_anim_use_all_bones=True``: every joint has
  curves over the whole take (needed by some importers); ``bake_anim_use_nla_strips=False``,
  ``bake_anim_use_all_actions=False``: one take with the whole scene (joints and blend-shape
  weights together), named after the clip, rather than one take per Blender action or NLA strip
  (the glTF importer's action animates the armature and the shape keys through two slots, and
  stashes it in muted NLA tracks).
* ``use_mesh_modifiers=False``: applying modifiers drops shape keys; the only modifier is the
  armature, which FBX stores as the skin. ``use_triangles=False``: the GLB's mesh is all
  triangles already, and with ``True`` Blender 5.0.1 exports a copy of the mesh whose shape keys
  are not animated (every blend-shape curve would hold the first row's value).
* ``mesh_smooth_type='FACE'``: smoothing groups besides the normals (Unreal warns "No smoothing
  group information" without them); ``use_tspace=False`` (no UVs), ``colors_type='NONE'``,
  ``use_custom_props=False``.

For Unity and Unreal users
--------------------------
Checked here with Blender's own FBX reader (the tests); not run in Unity or Unreal.

* Unity: the file's unit shows as "1m (File)" and the character at its size. Rig: Generic, or
  Humanoid with the avatar mapped by hand (the joint names are SMPL-X's). "Anim. Compression"
  (default Keyframe Reduction) may drop keys: Off keeps every row. Blend-shape weights of
  expression coefficients may leave [0, 100]: keep Player Settings "Clamp BlendShapes" off.
* Unreal: import as a skeletal mesh with its animation and tick "Convert Scene Unit" (the file
  is in metres, Unreal works in centimetres). ``pelvis`` is the root bone (the ``Armature``
  node is dropped), so root motion needs a root bone the user adds; the motion is in the
  pelvis' translation. "Animation Length: Exported Time" keeps the take's time range.
* Frame times follow the source's clock: the take may start later than 0 s.
* A GLB without animation (one row, a photo) gives an FBX with the static pose and no take.
* Between keys FBX readers interpolate Euler angles, not quaternions (slerp) as glTF readers
  do; at the keys (every row) both are exact.

Time in Blender (for the record): its glTF importer puts a key at frame ``t * fps * fps_base``
and its FBX importer at ``1 + t * fps`` (integer ``fps``); both are exact for an integer rate
with ``fps_base = 1``, and :mod:`wbcap.export.blender_fbx` handles fractional rates itself.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path

from wbcap.atomic import atomic_path, final_path
from wbcap.errors import InputError, WbcapError
from wbcap.export.blender_fbx import EXIT_NO_BPY, grid_miss, key_step
from wbcap.export.clip import OFF_GRID_WHY
from wbcap.temp_folders import temp_folder

__all__ = ["CRASHED", "INSTALL_HINT", "UNDER_A_MEMORY_LIMIT", "blender_available", "bpy_fix", "bpy_import_error",
           "write_fbx"]

logger = logging.getLogger(__name__)

#: How to get Blender's Python module.
INSTALL_HINT = 'pip install "wbcap[blender]" (Blender as a Python module: bpy 5.0.1, Python 3.11 only, about 1 GB)'

_SCRIPT = Path(__file__).with_name("blender_fbx.py")


def blender_available() -> bool:
    """Whether ``bpy`` can be found on this Python's path (found, not imported: importing it takes
    a second and half a gigabyte, and only the subprocess does)."""
    return importlib.util.find_spec("bpy") is not None


def bpy_import_error() -> str | None:
    """Why ``bpy`` does not import in a fresh Python (this one's interpreter, as
    :func:`write_fbx` runs it), or None when it imports: e.g. a bpy wheel on a server without the
    system libraries it loads. Found is not enough (:func:`blender_available`): a run with
    ``--export fbx`` checked only that, and failed after its whole first pass (a user trial).
    Takes the second or two of bpy's import; its output is dropped. The reason is the last line
    of its error output."""
    try:
        with temp_folder("wbcap-bpy-") as temp:
            proc = subprocess.run([sys.executable, "-c", "import bpy"], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300, check=False,
                                  cwd=os.path.abspath(os.sep),  # (not a working folder that may be gone: see _gl._probe)
                                  env=_blender_env(temp.path))
    except subprocess.TimeoutExpired as exc:
        return f"{type(exc).__name__}: {exc}"
    except OSError as exc:  # (also the temporary folder that could not be made: said as such, a review)
        return f"it could not be tried: {type(exc).__name__}: {exc}"
    if proc.returncode == 0:
        return None
    if proc.returncode < 0:  # (killed by a signal: under `ulimit -v 1000000` a SIGSEGV, said as "exit status -11")
        import signal

        from wbcap.limits import BLENDER_ADDRESS_SPACE, gigabytes, memory_limits

        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        limits = memory_limits()  # (only one below what the import takes is blamed: a review)
        small = limits and limits[0][1] < BLENDER_ADDRESS_SPACE
        return f"{CRASHED} ({name})" + (f" {UNDER_A_MEMORY_LIMIT} ({limits[0][0]}, {gigabytes(limits[0][1])}), less than "
                                        f"Blender's import takes" if small else "")
    lines = [ln.strip() for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {proc.returncode}"


#: How :func:`bpy_import_error` begins the reason of a Python that a signal ended while importing bpy ...
CRASHED = "its import crashed"
#: ... and how it goes on where a memory limit below what the import takes was set.
UNDER_A_MEMORY_LIMIT = "under this process's memory limit"


def bpy_fix(why: str) -> str:
    """The fix for ``bpy`` that does not import for :func:`bpy_import_error`'s reason ``why``: more
    memory where it crashed under a memory limit below what the import takes (a low-memory trial
    was told to reinstall it), else :data:`INSTALL_HINT`."""
    from wbcap.limits import BLENDER_ADDRESS_SPACE, gigabytes

    if why.startswith(f"{CRASHED} (") and UNDER_A_MEMORY_LIMIT in why:
        return (f"raise the memory limit (Blender's import took about {gigabytes(BLENDER_ADDRESS_SPACE)} of address "
                "space under ulimit -v)")
    return INSTALL_HINT


def _blender_env(folder: Path) -> dict[str, str]:
    """The environment of a Python that imports bpy, with what Blender writes in ``folder``,
    which the caller removes: its session folder (``$TMPDIR``), the freedesktop cache it makes
    on import (``thumbnails/`` in ``$XDG_CACHE_HOME``, else in ``~/.cache``: `wbcap doctor`'s
    check wrote there, a new user's trial) and its user resources (``$BLENDER_USER_RESOURCES``,
    else ``~/.config/blender/<version>``, where resetting to factory settings writes an
    extensions cache; the conversion uses none of the user's Blender settings or add-ons)."""
    return {**os.environ, "TMPDIR": str(folder), "XDG_CACHE_HOME": str(folder / "cache"),
            "BLENDER_USER_RESOURCES": str(folder / "blender")}


def _reason(log_path: Path) -> str:
    """The most telling line of a failed Blender run's log: the last ``wbcap:`` line of
    :mod:`wbcap.export.blender_fbx`, else the last exception line, else the last line."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    ours = [ln.removeprefix("wbcap: ") for ln in lines if ln.startswith("wbcap: ")]
    errors = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b.*:", ln)]
    return (ours or errors or lines or ["empty log"])[-1]


def _no_room(log_path: Path) -> int | None:
    """``errno.ENOSPC`` or ``errno.EDQUOT`` when a failed Blender run's log says it found the disk
    or the quota full (Blender's FBX writer raises ``OSError: [Errno 28] No space left on
    device``), else None."""
    text = _reason(log_path)  # (the failure's own line: not a full disk mentioned by the way)
    for name in ("ENOSPC", "EDQUOT"):
        code = getattr(errno, name, None)
        if code is not None and (f"[Errno {code}]" in text or os.strerror(code) in text):
            return code
    return None


def grid_shift(first_time: float, fps: float) -> float:
    """Seconds an FBX's keys lie after the GLB's (negative: before) for a clip whose first row is
    at ``first_time`` s in an FBX of ``fps`` frames per second: Blender's FBX exporter keys whole
    frames of the scene's rate, so :mod:`wbcap.export.blender_fbx` (step 2) moves a clip starting
    between two frames onto the nearer one (e.g. from 0.1 s at 5 fps: 0.1 s earlier; what
    :func:`write_fbx` avoids with a finer rate where one fits,
    :func:`~wbcap.export.blender_fbx.key_step`). 0.0 where the first row is on the grid
    (:func:`~wbcap.export.blender_fbx.grid_miss`: float32's precision, millisecond timestamps)."""
    return grid_miss(first_time, fps) / fps


def write_fbx(glb_path: str | Path, fbx_path: str | Path, *, fps: float, first_time: float | None = None,
              last_time: float | None = None) -> Path:
    """Convert a GLB of :func:`wbcap.export.gltf.write_glb` to FBX with Blender (see the module
    docstring), atomically.

    Args:
        glb_path: the ``.glb`` (one skinned character, one animation or none).
        fbx_path: the ``.fbx`` to write (its folder must exist; replaced if present).
        fps: the clip's rows per second (``clip.fps``, e.g. 25 or 30000/1001); the GLB's keys
            must lie on its grid (``times[0] + k / fps``).
        first_time: the clip's ``times[0]`` (seconds): when it lies between two frames of ``fps``
            the FBX is written at the smallest multiple of ``fps`` on whose frames it lies (a
            whole-number rate where one is), with a key every few frames
            (:func:`~wbcap.export.blender_fbx.key_step`); where none fits, the FBX's keys move
            onto the nearer frame (:func:`grid_shift`), said in one warning.
        last_time: the clip's ``times[-1]`` (seconds): a finer rate is used only with it, and
            only while the last row stays within Blender's frame range at that rate.

    Returns:
        ``fbx_path`` as a :class:`~pathlib.Path`.

    Raises:
        InputError: no such GLB, or ``fps`` not a positive finite number.
        WbcapError: ``bpy`` is not installed (one line with :data:`INSTALL_HINT`), or Blender
            failed (one line with the reason and the path of Blender's log, kept for it:
            ``<temp folder>/wbcap-fbx-*/<name>.fbx.blender.log``). The log is written in a new
            folder of the system's temporary folder (``tempfile``), never beside the FBX, and
            deleted on success and on any other exit (Ctrl-C included), so an interrupted export
            leaves nothing in the output folder. Blender's own session folder goes there too
            (its ``$TMPDIR``), so an interrupted Blender leaves none in the temporary folder. A
            folder that a killed export left (SIGKILL) is removed by the next FBX export
            (:func:`wbcap.temp_folders.temp_folder`).
    """
    glb = Path(glb_path)
    out = Path(fbx_path)
    if not glb.is_file():
        raise InputError(f"{glb}: no such GLB file; write it with wbcap.export.gltf.write_glb first")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise InputError(f"{out}: fps must be a positive number of rows per second, got {fps!r}")
    if not blender_available():
        raise WbcapError(f"{out}: FBX export needs Blender's Python module; {INSTALL_HINT}")
    # The log lives outside the output folder (which then holds only finished files and wbcap's
    # temporaries): removed on success and on any interruption, kept only for the message of a failure.
    step = 1 if first_time is None or last_time is None else key_step(first_time, fps, last_time)
    with temp_folder("wbcap-fbx-") as temp, atomic_path(out) as tmp:
        log_dir = temp.path
        log_path = log_dir / f"{final_path(out).name}.blender.log"
        cmd = [sys.executable, str(_SCRIPT), str(glb.resolve()), str(tmp.resolve()), repr(float(fps)), str(step)]
        logger.debug("running %s (log: %s)", " ".join(cmd), log_path)
        # Blender makes a session folder (blender_XXXXXX) in $TMPDIR and removes it when it ends
        # well; killed with wbcap (Ctrl-C, SIGTERM) it left it there: now it lies in log_dir
        env = _blender_env(log_dir)
        with open(log_path, "wb") as log_file:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                  cwd=str(out.parent.resolve()), env=env, check=False)
        if proc.returncode == EXIT_NO_BPY:
            raise WbcapError(f"{out}: Blender's Python module does not import ({_reason(log_path)}); "
                             f"{INSTALL_HINT}")
        if proc.returncode != 0 or not tmp.is_file():
            no_room = _no_room(log_path)
            if no_room is not None:  # (the disk or quota filled while Blender wrote: the one full-disk line)
                raise OSError(no_room, os.strerror(no_room), str(out))
            temp.keep()  # (the log the message names)
            raise WbcapError(f"{out}: Blender could not convert {glb.name} to FBX ({_reason(log_path)}); "
                             f"see its log {log_path}")
    logger.info("wrote %s (%d bytes)", final_path(out), out.stat().st_size)
    shift = 0.0 if first_time is None else grid_shift(first_time, fps * step)
    if shift:
        logger.warning("%s: FBX keys lie on whole frames of %g fps and the clip's first row (%.4g s) falls between two, "
                       "so its keys are %.4g s %s than the GLB's and the npz's " + OFF_GRID_WHY,
                       final_path(out).name, fps * step, first_time, abs(shift), "later" if shift > 0 else "earlier")
    return out
