// wbcap view: the page's logic (an ES module; three.js from ./vendor/three through the import map).
//
// Reads view.json (wbcap/view/manifest.py documents it) and shows, for a video run, render.mp4
// beside a 3D view of every track's animated body (its GLB), locked to one source time t:
//   * the video drives t while playing (t = the presented frame's time + offset);
//   * seeking, frame steps and the scrub bar set t to a frame's time, seek the video to that
//     frame and pose every body at t (AnimationMixer.setTime: the GLB keys are source seconds);
// and, for a photo folder, the overlay photo beside every person's OBJ in the photo's camera.
// The 3D view is in the frame of the track files (view.json's `frame`): "camera" (the source camera
// at the origin looking down -z; a grid is fitted under the feet) or "world" (`wbcap run --world`:
// the ground y = 0, the source camera where the GLB's `source_camera` node stands).
// The 3D view renders on demand (when t, the camera or the layout changes), GLBs load nearest
// to t first, three at a time, and parameters are fetched per chunk of 100 frames when shown.
//
// window.wbcapView is the page's automation interface (tests/test_view.py reads the page
// through it): seek, step, play, pause, state, skinnedVertices, bonePosition, sourcePixels,
// videoPixels, params, whenLoaded.

import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { floorIndex, frameTolerance, nearestIndex, nearestSpan } from './timeline.js';

const $ = (id) => document.getElementById(id);
const LOADERS_AT_ONCE = 3;
const GROUND_SAMPLES = 12;

function base64(typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function once(target, name) {
  return new Promise((resolve) => target.addEventListener(name, resolve, { once: true }));
}

function fmt(v) {
  return (v >= 0 ? ' ' : '') + v.toFixed(3);
}

/** Vertices and triangles of an OBJ as wbcap writes it (`v x y z`, `f a b c`, 1-based). */
function parseOBJ(text) {
  const pos = [];
  const idx = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('v ')) {
      const p = line.trim().split(/\s+/);
      pos.push(+p[1], +p[2], +p[3]);
    } else if (line.startsWith('f ')) {
      const n = pos.length / 3;
      const f = line.trim().split(/\s+/).slice(1).map((s) => { const i = parseInt(s, 10); return i < 0 ? n + i : i - 1; });
      for (let k = 1; k + 1 < f.length; k++) idx.push(f[0], f[k], f[k + 1]);
    }
  }
  const g = new THREE.BufferGeometry();
  g.setAttribute('position', new THREE.Float32BufferAttribute(pos, 3));
  g.setIndex(idx);
  g.computeVertexNormals();
  return g;
}

/** A pose of view.json ({translation, rotation: [x, y, z, w]}) as a matrix (identity for none). */
function poseMatrix(pose) {
  const m = new THREE.Matrix4();
  if (!pose) return m;
  return m.compose(new THREE.Vector3().fromArray(pose.translation), new THREE.Quaternion().fromArray(pose.rotation),
    new THREE.Vector3(1, 1, 1));
}

function samePose(a, b) {
  const eq = (x, y) => x.length === y.length && x.every((v, i) => v === y[i]);
  return !!a && !!b && eq(a.translation, b.translation) && eq(a.rotation, b.rotation);
}

/** A perspective camera with a pinhole's exact projection (focal, principal point off the centre too). */
function setIntrinsics(camera, info, near = 0.05, far = 1000) {
  const [fx, fy] = info.focal;
  const [cx, cy] = info.princpt;
  const [w, h] = info.image_size;
  camera.projectionMatrix.set(
    2 * fx / w, 0, 1 - 2 * cx / w, 0,
    0, 2 * fy / h, 2 * cy / h - 1, 0,
    0, 0, -(far + near) / (far - near), -2 * far * near / (far - near),
    0, 0, -1, 0);
  camera.projectionMatrixInverse.copy(camera.projectionMatrix).invert();
}

/**
 * The ground under the people in the camera frame: the plane through the lowest points of the
 * bodies (`feet`, y-up camera frame). Without --world wbcap does not estimate gravity, so a camera
 * looking down sees a tilted ground: with feet spread at least 0.5 m both ways the plane
 * y = a x + b z + c is fitted to them (least squares; tilts over 45 degrees are refused), else it is level. It then goes through the lowest
 * tenth of the feet (feet in mid-stride are above the ground). Returns {normal, point}.
 */
function fitGround(feet) {
  const up = new THREE.Vector3(0, 1, 0);
  const n = feet.length;
  const mean = feet.reduce((a, p) => a.add(p), new THREE.Vector3()).divideScalar(n);
  let sxx = 0; let sxz = 0; let szz = 0; let sxy = 0; let szy = 0;
  for (const p of feet) {
    const dx = p.x - mean.x; const dy = p.y - mean.y; const dz = p.z - mean.z;
    sxx += dx * dx; sxz += dx * dz; szz += dz * dz; sxy += dx * dy; szy += dz * dy;
  }
  const minSpread = (sxx + szz) / 2 - Math.hypot((sxx - szz) / 2, sxz); // smaller eigenvalue, x n
  let normal = up;
  if (n >= 6 && minSpread / n > 0.25) {
    const det = sxx * szz - sxz * sxz;
    const a = (sxy * szz - szy * sxz) / det;
    const b = (szy * sxx - sxy * sxz) / det;
    const fitted = new THREE.Vector3(-a, 1, -b).normalize();
    if (fitted.angleTo(up) < Math.PI / 4) normal = fitted;
  }
  const heights = feet.map((p) => p.clone().sub(mean).dot(normal)).sort((x, y) => x - y);
  const low = heights[Math.floor(0.1 * (heights.length - 1))];
  return { normal: normal.clone(), point: mean.clone().addScaledVector(normal, low) };
}

// ------------------------------------------------------------------------------------ 3D view

class View3D {
  constructor(container) {
    this.container = container;
    this.renderer = new THREE.WebGLRenderer({ antialias: true });
    this.renderer.setPixelRatio(window.devicePixelRatio || 1);
    container.appendChild(this.renderer.domElement);
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(0x1e2226);
    // lit like render.mp4: some ambient light, a light from the viewer, one from above
    this.scene.add(new THREE.AmbientLight(0xffffff, 0.9));
    this.headLight = new THREE.DirectionalLight(0xffffff, 1.8);
    this.scene.add(this.headLight, this.headLight.target);
    const sun = new THREE.DirectionalLight(0xffffff, 0.9);
    sun.position.set(1, 4, 2);
    this.scene.add(sun);
    // `world` holds the files' y-up world: in the camera frame (the source camera at its origin)
    // turned so that the ground fitted under the feet is level for the orbit camera (fitGround); in
    // the world frame as it is (the ground y = 0)
    this.world = new THREE.Group();
    this.scene.add(this.world);
    this.bodies = new THREE.Group();
    this.world.add(this.bodies);
    this.grid = null;
    this.gridOn = true;
    this.orbitCam = new THREE.PerspectiveCamera(45, 1, 0.02, 500);
    this.sourceCam = new THREE.PerspectiveCamera();
    this.world.add(this.sourceCam); // turns with the world: the view through it never changes
    this.frame = 'camera';
    this.controls = new OrbitControls(this.orbitCam, this.renderer.domElement);
    this.controls.addEventListener('change', () => this.requestRender());
    this.useSource = false;
    this.cameraInfo = null;
    this.home = { target: new THREE.Vector3(0, -0.6, -4), position: new THREE.Vector3(), groundY: -1.5 };
    this.pending = false;
    this.frameCount = 0;
    new ResizeObserver(() => this.resize()).observe(container);
    this.resetView();
  }

  setCamera(info) {
    this.cameraInfo = info;
    setIntrinsics(this.sourceCam, info);
    this.resize();
  }

  /**
   * The frame of the files: "camera" or "world" (the ground y = 0), and the source camera's pose in
   * it (view.json's source_camera: where the GLB's source_camera node stands; the origin in the
   * camera frame). In the world frame the grid lies on y = 0 at once, in front of the camera.
   */
  setFrame(frame, pose) {
    this.frame = frame === 'world' ? 'world' : 'camera';
    poseMatrix(pose).decompose(this.sourceCam.position, this.sourceCam.quaternion, this.sourceCam.scale);
    this.sourceCam.updateMatrixWorld(true);
    if (this.frame === 'world') {
      this.world.quaternion.identity();
      this.world.updateMatrixWorld(true);
      const c = this.sourceCam.position;
      const ahead = this.sourceCam.getWorldDirection(new THREE.Vector3()).setY(0);
      if (ahead.lengthSq() < 1e-12) ahead.set(0, 0, -1);
      ahead.normalize().multiplyScalar(4);
      this.layGrid(c.x + ahead.x, 0, c.z + ahead.z, 2);
      this.home.target.set(c.x + ahead.x, 0.9, c.z + ahead.z);
      this.home.groundY = 0;
    }
    this.resetView();
  }

  setSourceCamera(on) {
    this.useSource = !!on && !!this.cameraInfo;
    this.controls.enabled = !this.useSource;
    this.resize();
  }

  setGrid(on) {
    this.gridOn = !!on;
    if (this.grid) this.grid.visible = this.gridOn;
    this.requestRender();
  }

  /** A 1 m grid on the level plane at height y, centred on (cx, cz), reaching `radius` + 1 m from there. */
  layGrid(cx, y, cz, radius) {
    if (this.grid) { this.scene.remove(this.grid); this.grid.geometry.dispose(); }
    const n = Math.max(4, 2 * Math.ceil(radius + 1));
    this.grid = new THREE.GridHelper(n, n, 0x5a646e, 0x3a4148);
    this.grid.position.set(cx, y, cz);
    this.grid.visible = this.gridOn;
    this.scene.add(this.grid);
  }

  /**
   * Lay a 1 m grid on the ground under the people (`centres`: their pelvis positions, files'
   * coordinates). The ground: in the world frame y = 0 as the files say; in the camera frame the
   * plane fitted under `feet` (the lowest body point at a few times), the world turned level on it.
   */
  placeGround(feet, centres, moveCamera) {
    const up = new THREE.Vector3(0, 1, 0);
    let ground;
    if (this.frame === 'world') {
      if (!centres.length && !feet.length) return;
      ground = { normal: up, point: new THREE.Vector3() };
      this.world.quaternion.identity();
    } else {
      if (!feet.length) return;
      ground = fitGround(feet);
      this.world.quaternion.setFromUnitVectors(ground.normal, up);
    }
    this.world.updateMatrixWorld(true);
    const y = ground.point.clone().applyQuaternion(this.world.quaternion).y;
    const cs = (centres.length ? centres : feet).map((p) => p.clone().applyQuaternion(this.world.quaternion));
    // the middle of the people: the median with a few of them (robust to a far false detection), else the mean
    const mid = (xs) => {
      if (xs.length < 5) return xs.reduce((a, b) => a + b, 0) / xs.length;
      return [...xs].sort((a, b) => a - b)[xs.length >> 1];
    };
    const cx = mid(cs.map((p) => p.x));
    const cz = mid(cs.map((p) => p.z));
    const dists = cs.map((p) => Math.hypot(p.x - cx, p.z - cz)).sort((a, b) => a - b);
    const radius = dists[dists.length - 1];
    this.layGrid(cx, y, cz, radius);
    this.ground = ground;
    this.home.target.set(cx, y + 0.9, cz);
    this.home.groundY = y;
    if (moveCamera) this.resetView();
    this.requestRender();
  }

  /**
   * The orbit camera back home: behind and above the source camera, looking at the middle of the
   * people. Everyone wbcap found was in the source camera's view, so this view sees them all, from
   * higher up, whatever their spread.
   */
  resetView() {
    const target = this.home.target;
    this.scene.updateMatrixWorld(true);
    const cam = this.sourceCam.getWorldPosition(new THREE.Vector3()); // the origin in the camera frame
    const flat = new THREE.Vector3(target.x - cam.x, 0, target.z - cam.z);
    const d = Math.max(1, flat.length());
    const back = flat.normalize().multiplyScalar(-0.35 * d);
    this.home.position.set(cam.x + back.x, this.home.groundY + Math.max(2.5, 0.45 * d), cam.z + back.z);
    this.orbitCam.position.copy(this.home.position);
    this.controls.target.copy(target);
    this.controls.update();
    this.requestRender();
  }

  resize() {
    const w = Math.max(1, this.container.clientWidth);
    const h = Math.max(1, this.container.clientHeight);
    let cw = w;
    let ch = h;
    if (this.useSource) { // letterbox to the image's shape: the view then lines up with the video
      const [iw, ih] = this.cameraInfo.image_size;
      const s = Math.min(w / iw, h / ih);
      cw = Math.max(1, Math.floor(iw * s));
      ch = Math.max(1, Math.floor(ih * s));
    }
    this.renderer.setSize(cw, ch, true);
    const style = this.renderer.domElement.style; // whole-pixel placement: no resampling of the picture
    style.left = `${Math.floor((w - cw) / 2)}px`;
    style.top = `${Math.floor((h - ch) / 2)}px`;
    this.orbitCam.aspect = cw / ch;
    this.orbitCam.updateProjectionMatrix();
    this.requestRender();
  }

  /** The frame and ground as shown (state()): grid height and how far the files' world is turned to level it. */
  describe() {
    this.scene.updateMatrixWorld(true);
    const q = this.world.quaternion;
    return {
      viewFrame: this.frame, // "camera" | "world" (state().frame is the video frame's index)
      groundY: this.grid ? this.grid.position.y : null,
      levelTiltDeg: THREE.MathUtils.radToDeg(2 * Math.acos(Math.min(1, Math.abs(q.w)))),
      sourceCameraPosition: this.sourceCam.getWorldPosition(new THREE.Vector3()).toArray(),
      orbitCameraPosition: this.orbitCam.position.toArray(),
    };
  }

  /** Pixel (x right, y down, origin at the image's top-left corner) of scene point `v` through the source camera. */
  sourcePixel(v) {
    const [w, h] = this.cameraInfo.image_size;
    const p = v.clone().project(this.sourceCam);
    return [(p.x + 1) / 2 * w, (1 - p.y) / 2 * h];
  }

  requestRender() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.render(); });
  }

  render() {
    const camera = this.useSource ? this.sourceCam : this.orbitCam;
    camera.updateMatrixWorld();
    this.headLight.position.setFromMatrixPosition(camera.matrixWorld);
    this.headLight.target.position.copy(this.headLight.position).add(camera.getWorldDirection(new THREE.Vector3()));
    this.headLight.target.updateMatrixWorld();
    this.renderer.render(this.scene, camera);
    this.frameCount += 1;
  }
}

// ------------------------------------------------------------------------------------ bodies

/** One GLB of a track (a track split at a long gap has several): loaded, posed at t. */
class Part {
  constructor(track, spec) {
    Object.assign(this, { track, src: spec.src, t0: spec.t0, t1: spec.t1, rows: spec.rows, frame: spec.frame || 'camera',
      start: spec.start || 0 }); // start: the source's time of the file's key time 0 (keys moved to start at 0)
    // the file's world -> the view's (set by the viewer): null when the file is in the view's frame
    this.placement = null;
    this.state = 'idle';
    this.root = null;
    this.mesh = null;
    this.mixer = null;
    this.action = null;
    this.bones = new Map();
  }

  async load(loader, color) {
    this.state = 'loading';
    try {
      const gltf = await loader.loadAsync(this.src);
      this.root = gltf.scene;
      const cameras = [];
      this.root.traverse((o) => {
        if (o.isSkinnedMesh) this.mesh = o;
        if (o.isCamera) cameras.push(o);
        if (o.isBone) this.bones.set(o.name, o);
      });
      for (const c of cameras) c.parent.remove(c); // the page has its own source camera (view.json's pose of it)
      if (this.placement) this.root.applyMatrix4(this.placement);
      this.mesh.material = new THREE.MeshStandardMaterial({ color, roughness: 0.8, metalness: 0.0, side: THREE.DoubleSide });
      this.mesh.frustumCulled = false; // the rest pose's bounds say nothing of where the animation goes
      this.mixer = new THREE.AnimationMixer(this.root);
      const clip = gltf.animations[0];
      if (clip) {
        this.action = this.mixer.clipAction(clip);
        this.action.setLoop(THREE.LoopOnce, 1); // hold the last pose: LoopRepeat would wrap at the end
        this.action.clampWhenFinished = true;
      }
      this.state = 'ready';
    } catch (err) {
      this.state = 'error';
      console.error(`wbcap view: cannot load ${this.src}: ${err.message || err}`);
    }
  }

  covers(t, half) {
    return t >= this.t0 - half && t <= this.t1 + half;
  }

  pose(t) {
    if (!this.action) return;
    this.action.reset();
    this.action.play();
    this.mixer.setTime(t - this.start);
  }

  /** The lowest point of the skinned body (with `withFeet`) and the pelvis at a few times (`toData`: scene -> the view's frame; for the ground). */
  sample(toData, withFeet = true) {
    const out = { feet: [], pelvis: [] };
    const v = new THREE.Vector3();
    const n = this.t1 > this.t0 ? GROUND_SAMPLES : 1;
    const count = this.mesh.geometry.attributes.position.count;
    const pelvis = this.bones.get('pelvis');
    for (let s = 0; s < n; s++) {
      this.pose(n > 1 ? this.t0 + (this.t1 - this.t0) * s / (n - 1) : this.t0);
      this.root.updateMatrixWorld(true);
      if (withFeet) {
        const low = new THREE.Vector3(0, Infinity, 0);
        for (let i = 0; i < count; i += 7) {
          this.mesh.getVertexPosition(i, v);
          toData(this.mesh.localToWorld(v));
          if (v.y < low.y) low.copy(v);
        }
        out.feet.push(low);
      }
      if (pelvis) out.pelvis.push(toData(pelvis.getWorldPosition(new THREE.Vector3())));
    }
    return out;
  }
}

// ------------------------------------------------------------------------------------ the page

class Viewer {
  constructor(manifest) {
    this.m = manifest;
    this.view = new View3D($('view3d'));
    this.t = 0;
    this.k = 0;
    this.playing = false;
    this.selected = null;
    this.chunks = new Map();
    this.paramsShown = null;
    this.presented = null;
    this.video = null;
    this.groundSamples = [];
    this.groundPlaced = false;
    $('title').textContent = `wbcap view: ${manifest.title}`;
    this.view.setFrame(manifest.frame, manifest.source_camera);
    $('frame-info').textContent = this.frameText();
    $('frame-info').title = this.frameTitle();
    $('src-cam').addEventListener('change', (e) => this.view.setSourceCamera(e.target.checked));
    $('grid').addEventListener('change', (e) => this.view.setGrid(e.target.checked));
    $('reset-view').addEventListener('click', () => this.view.resetView());
    $('show-all').addEventListener('click', () => this.setAllVisible(true));
    $('show-none').addEventListener('click', () => this.setAllVisible(false));
  }

  status(text) {
    $('status').textContent = text;
    $('status').title = text; // (cut off with an ellipsis in a narrow window)
  }

  /** The frame the 3D view shows, in words (the page's header). */
  frameText() {
    const m = this.m;
    if (m.frame === 'world') {
      const c = m.source_camera;
      let text = `world frame · ground y = 0 · camera ${c.height_m.toFixed(2)} m up, ${c.pitch_deg.toFixed(1)}° down`;
      if (Math.abs(c.roll_deg) >= 0.05) text += `, roll ${c.roll_deg.toFixed(1)}°`;
      const others = (m.tracks || []).filter((t) => t.parts.some((p) => p.frame !== 'world')).map((t) => t.id);
      if (others.length) text += ` · track${others.length > 1 ? 's' : ''} ${others.join(', ')} in the camera frame, placed through the camera`;
      return text;
    }
    const why = m.world && m.world.frame === 'camera' && m.world.reason ? ` (--world fell back: ${m.world.reason})` : '';
    return `camera frame${why}`;
  }

  frameTitle() {
    if (this.m.frame === 'world') {
      return 'The track files are in the world of the ground wbcap estimated (wbcap run --world): gravity -y, the ground ' +
        'y = 0; the source camera stands where the files\' source_camera node is.';
    }
    return 'The track files are in the source camera\'s frame (the camera at the origin, looking down -z); the grid is ' +
      'fitted under the feet.';
  }

  setAllVisible(on) {
    for (const item of this.items) this.setVisible(item.id, on);
  }

  setVisible(id, on) {
    const item = this.items.find((x) => x.id === id);
    if (!item) return;
    item.visible = !!on;
    item.checkbox.checked = item.visible;
    this.update();
  }

  select(id) {
    this.selected = id;
    for (const item of this.items) item.li.classList.toggle('selected', item.id === id);
    this.showParams();
  }

  /** The track / person list: a checkbox (shown), a colour swatch, a name and a range. */
  buildList(items) {
    const ul = $('tracks');
    ul.textContent = '';
    for (const item of items) {
      const li = document.createElement('li');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = true;
      box.addEventListener('click', (e) => e.stopPropagation());
      box.addEventListener('change', () => this.setVisible(item.id, box.checked));
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = item.color;
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = item.label;
      const range = document.createElement('span');
      range.className = 'range';
      range.textContent = item.range;
      li.append(box, sw, name, range);
      li.dataset.id = String(item.id);
      li.addEventListener('click', () => this.select(item.id));
      ul.appendChild(li);
      Object.assign(item, { li, checkbox: box, visible: true });
    }
    this.items = items;
  }

  paramsTable(rec) {
    const names = this.m.joint_names;
    const joints = { root_pose: [0], jaw_pose: [22], leye_pose: [23], reye_pose: [24],
                     body_pose: names.slice(1, 22).map((_, i) => i + 1),
                     lhand_pose: names.slice(25, 40).map((_, i) => i + 25),
                     rhand_pose: names.slice(40, 55).map((_, i) => i + 40) };
    const wrap = document.createElement('div');
    const plain = document.createElement('table');
    wrap.appendChild(plain);
    const row = (table, k, v) => {
      const tr = table.insertRow();
      const a = tr.insertCell();
      a.className = 'k';
      a.textContent = k;
      tr.insertCell().textContent = v;
    };
    for (const [key, value] of Object.entries(rec)) {
      if (key in joints && Array.isArray(value)) {
        const det = document.createElement('details');
        det.open = key === 'root_pose' || key === 'body_pose';
        const sum = document.createElement('summary');
        sum.textContent = `${key} (axis-angle, rad)`;
        det.appendChild(sum);
        const t = document.createElement('table');
        joints[key].forEach((j, i) => row(t, names[j], value.slice(3 * i, 3 * i + 3).map(fmt).join(' ')));
        det.appendChild(t);
        wrap.appendChild(det);
      } else if (Array.isArray(value)) {
        row(plain, key, value.map((x) => (typeof x === 'number' ? fmt(x) : String(x))).join(' '));
      } else if (value && typeof value === 'object') {
        for (const [k2, v2] of Object.entries(value)) row(plain, `${key}.${k2}`, Array.isArray(v2) ? v2.join(' ') : String(v2));
      } else {  // (a score to four decimals, not 0.8489496111869812: a new user's trial)
        row(plain, key, typeof value === 'number' && !Number.isInteger(value) ? String(Number(value.toFixed(4))) : String(value));
      }
    }
    return wrap;
  }

  renderParams(title, rec, note) {
    $('params-title').textContent = title;
    const box = $('params');
    box.textContent = '';
    this.paramsShown = rec;
    if (note) {
      const p = document.createElement('p');
      p.className = 'note';
      p.textContent = note;
      box.appendChild(p);
    }
    if (rec) box.appendChild(this.paramsTable(rec));
  }
}

class VideoViewer extends Viewer {
  constructor(manifest) {
    super(manifest);
    this.frames = manifest.frame_times;
    this.loader = new GLTFLoader();
    this.tracks = manifest.tracks.map((spec) => ({ ...spec }));
    const display = poseMatrix(manifest.source_camera);
    for (const tr of this.tracks) {
      tr.partObjs = tr.parts.map((spec) => {
        const p = new Part(tr, spec);
        // a file in another frame than the view's (or with its camera elsewhere) is placed through its source camera;
        // a fusion's files share one world whatever their source cameras (a review: one moved by another's camera)
        if (!manifest.fused && spec.source_camera && !samePose(spec.source_camera, manifest.source_camera)) {
          p.placement = display.clone().multiply(poseMatrix(spec.source_camera).invert());
        }
        return p;
      });
    }
    this.view.setCamera(manifest.camera);
    this.buildList(this.tracks.map((tr) => ({
      id: tr.id, color: tr.color, label: `track ${tr.id}`,
      // (the bare row count read as nothing: a new user's trial)
      range: `${tr.first.toFixed(2)}–${tr.last.toFixed(2)} s · ${tr.rows} frame${tr.rows === 1 ? '' : 's'} seen`,
    })));
    const scrub = $('scrub');
    scrub.max = String(Math.max(0, this.frames.length - 1));
    scrub.addEventListener('input', () => this.seek(this.frames[+scrub.value]));
    $('play').addEventListener('click', () => (this.playing ? this.pause() : this.play()));
    $('prev').addEventListener('click', () => this.step(-1));
    $('next').addEventListener('click', () => this.step(1));
    // A control clicked with the mouse gives the keys back to the page: the focus it took kept
    // space and the arrows from the page's keys below (a new user's trial: after one click on |▶,
    // ← → did nothing and space stepped again; a viewer trial: after a click on the scrub bar,
    // space did nothing). A control reached with Tab keeps them. Caught on
    // the way down (capture): the track list's boxes stop their clicks from reaching the page.
    document.addEventListener('click', (e) => {
      const control = e.target.closest('button, summary, input[type=checkbox], input[type=range]');
      if (control && e.detail > 0) control.blur(); // (at once: a key pressed right after can come before a timer)
    }, true);
    document.addEventListener('keydown', (e) => {
      if (e.target.closest('input, button, select, textarea, summary')) return; // they have their own keys
      if (e.key === ' ') { e.preventDefault(); this.playing ? this.pause() : this.play(); }
      else if (e.key === 'ArrowRight') { e.preventDefault(); this.step(1); }
      else if (e.key === 'ArrowLeft') { e.preventDefault(); this.step(-1); }
    });
    if (manifest.video) this.setupVideo(manifest.video);
    else {
      $('media-pane').parentElement.classList.add('no-media');
      this.view.resize();
    }
  }

  setupVideo(spec) {
    const v = $('video');
    this.video = v;
    this.offset = spec.offset;
    v.addEventListener('error', () => {
      $('media-note').textContent = `This browser cannot play ${spec.src} (H.264): ${v.error ? v.error.message : ''}; the 3D view still plays.`;
      this.video = null;
    });
    v.addEventListener('ended', () => this.pause());
    v.src = spec.src;
    if ('requestVideoFrameCallback' in v) {
      const onFrame = (now, meta) => { this.presented = meta.mediaTime; v.requestVideoFrameCallback(onFrame); };
      v.requestVideoFrameCallback(onFrame);
    }
  }

  /** Load every GLB, nearest to t first, LOADERS_AT_ONCE at a time. */
  loadAll() {
    const parts = this.tracks.flatMap((tr) => tr.partObjs);
    const dist = (p) => (this.t < p.t0 ? p.t0 - this.t : this.t > p.t1 ? this.t - p.t1 : 0);
    parts.sort((a, b) => dist(a) - dist(b));
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < parts.length) {
        const p = parts[next++];
        await p.load(this.loader, p.track.color);
        done += 1;
        if (p.state === 'ready') {
          this.view.bodies.add(p.root);
          this.addGroundSample(p.sample((v) => this.view.world.worldToLocal(v), this.view.frame !== 'world'));
          p.pose(this.t);
        }
        this.status(done < parts.length ? `loading bodies ${done}/${parts.length}…` : this.summary());
        this.update();
      }
    };
    this.loaded = Promise.all(Array.from({ length: Math.min(LOADERS_AT_ONCE, parts.length) }, worker));
    return this.loaded;
  }

  summary() {
    const n = this.tracks.length;
    return `${n} track${n === 1 ? '' : 's'} · ${this.frames.length} frames · ${this.m.fps.toFixed(3).replace(/\.?0+$/, '')} fps`;
  }

  addGroundSample(s) {
    this.groundSamples.push(s);
    const feet = this.groundSamples.flatMap((g) => g.feet).filter((p) => Number.isFinite(p.y));
    if (this.view.frame === 'world' && !this.groundSamples.some((g) => g.pelvis.length)) return;
    this.view.placeGround(feet, this.groundSamples.flatMap((g) => g.pelvis), !this.groundPlaced);
    this.groundPlaced = true;
  }

  /** Pose and show every loaded body at t; the time display, scrub bar and parameters follow. */
  update() {
    for (const tr of this.tracks) {
      const item = this.items.find((x) => x.id === tr.id);
      let present = false;
      for (const p of tr.partObjs) {
        if (p.state !== 'ready') continue;
        const on = p.covers(this.t, this.half);
        present ||= on;
        p.root.visible = on && item.visible;
        if (on) p.pose(this.t);
      }
      present ||= tr.first - this.half <= this.t && this.t <= tr.last + this.half;
      item.li.classList.toggle('absent', !present);
    }
    this.view.requestRender();
    const idx = this.m.video ? this.m.video.frame_index[this.k] : -1;
    $('time').textContent = `t = ${this.t.toFixed(3)} s · frame ${this.k + 1}/${this.frames.length}` +
      (idx >= 0 ? ` (source frame ${idx})` : '');
    $('scrub').value = String(this.k);
    const now = performance.now();
    if (!this.playing || !(now - this.paramsAt < 250)) { // while playing, a few times a second is enough
      this.paramsAt = now;
      this.showParams();
    }
  }

  async chunk(spec) {
    if (!this.chunks.has(spec.src)) this.chunks.set(spec.src, fetch(spec.src).then((r) => r.json()));
    return this.chunks.get(spec.src);
  }

  async showParams() {
    const tr = this.tracks.find((x) => x.id === this.selected);
    if (!tr) return;
    const t = this.t;
    const tol = this.half;
    const spec = tr.chunks[nearestSpan(tr.chunks, t, tol)]; // the chunk that holds the record nearest t
    const title = `Parameters: track ${tr.id}`;
    let rec = null;
    if (spec) {
      const rows = await this.chunk(spec);
      if (t !== this.t || this.selected !== tr.id) return; // moved on meanwhile
      rec = rows[nearestIndex(rows, t, tol, (r) => r.time)] || null;
    }
    const note = rec ? `${spec.file || 'params.jsonl'}, frame ${rec.frame}, t = ${rec.time.toFixed(3)} s` :
      `track ${tr.id} is not in params.jsonl at t = ${t.toFixed(3)} s` +
      (t >= tr.first && t <= tr.last ? ' (missed here: the 3D body is filled in)' : '');
    this.renderParams(title, rec, note);
  }

  /** Go to the frame shown at t: video and bodies at that frame's time. Resolves when the video shows it. */
  async seek(t) {
    this.k = floorIndex(this.frames, t);
    this.t = this.frames[this.k];
    this.update();
    if (this.video && !this.playing) {
      const next = this.frames[this.k + 1];
      // a hair past the frame's time (never past the next frame): the decoder shows the frame at or before
      const eps = Math.min(1e-3, next !== undefined ? (next - this.t) / 4 : 1e-3);
      const target = this.t - this.offset + eps;
      if (Math.abs(this.video.currentTime - target) > 1e-7 || this.video.seeking) {
        this.video.currentTime = target;
        await Promise.race([once(this.video, 'seeked'), once(this.video, 'error')]);
      }
    }
    return this.state();
  }

  step(n) {
    return this.seek(this.frames[Math.min(this.frames.length - 1, Math.max(0, this.k + n))]);
  }

  async play() {
    if (this.playing) return;
    if (this.k >= this.frames.length - 1) await this.seek(this.frames[0]);
    this.playing = true;
    $('play').textContent = '❚❚';
    this.clock = { wall: performance.now(), t: this.t };
    if (this.video) {
      this.presented = null;
      try { await this.video.play(); } catch (err) { console.warn(`wbcap view: video.play: ${err.message}`); }
    }
    const tick = () => {
      if (!this.playing) return;
      let t;
      if (this.video) t = (this.presented ?? this.video.currentTime) + this.offset;
      else t = this.clock.t + (performance.now() - this.clock.wall) / 1000;
      const k = floorIndex(this.frames, t);
      if (k !== this.k || this.t !== this.frames[k]) {
        this.k = k;
        this.t = this.frames[k];
        this.update();
      }
      if (!this.video && t >= this.frames[this.frames.length - 1]) { this.pause(); return; }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  async pause() {
    if (!this.playing) return this.state();
    this.playing = false;
    $('play').textContent = '▶';
    if (this.video) {
      this.video.pause();
      return this.seek(this.video.currentTime + this.offset); // settle video and bodies on one frame
    }
    return this.state();
  }

  /**
   * How far from t (the time of frame k) a params.jsonl record or a file's first or last key still
   * counts as frame k: half the gap to the nearer neighbouring frame (timeline.js; a variable frame
   * rate puts frames closer than half the average interval, 0.5 / fps).
   */
  get half() {
    return frameTolerance(this.frames, this.k, 0.5 / this.m.fps);
  }

  part(id) {
    const tr = this.tracks.find((x) => x.id === id);
    return tr ? tr.partObjs.find((p) => p.state === 'ready' && p.covers(this.t, this.half)) : null;
  }

  state() {
    return {
      t: this.t, frame: this.k, frames: this.frames.length,
      frameIndex: this.m.video ? this.m.video.frame_index[this.k] : -1,
      videoTime: this.video ? this.video.currentTime : null, seeking: this.video ? this.video.seeking : false,
      playing: this.playing, sourceCamera: this.view.useSource, rendered: this.view.frameCount,
      canvas: [this.view.renderer.domElement.width, this.view.renderer.domElement.height],
      ...this.view.describe(),
      tracks: this.tracks.map((tr) => {
        const p = this.part(tr.id);
        const item = this.items.find((x) => x.id === tr.id);
        return { id: tr.id, color: tr.color, visible: item.visible, shown: !!(p && p.root.visible),
                 loaded: tr.partObjs.filter((q) => q.state === 'ready').length, parts: tr.partObjs.length };
      }),
    };
  }
}

class ImageViewer extends Viewer {
  constructor(manifest) {
    super(manifest);
    this.images = manifest.images;
    $('media-pane').classList.add('photo');
    $('controls').classList.add('photo');
    const sel = $('image-select');
    for (const [i, im] of this.images.entries()) sel.add(new Option(im.name, String(i)));
    sel.addEventListener('change', () => this.showImage(+sel.value));
    this.objects = new Map();
  }

  async showImage(i) {
    const im = this.images[i];
    this.image = im;
    $('image-select').value = String(i);
    $('time').textContent = `${im.name} · ${im.people.length} ${im.people.length === 1 ? 'person' : 'people'}`;
    const photo = $('photo');
    if (im.overlay) { photo.src = im.overlay; $('media-note').textContent = ''; }
    else { photo.removeAttribute('src'); $('media-note').textContent = 'no render_original_img.jpg (the run used --no-render)'; }
    this.view.setCamera(im.camera);
    this.view.bodies.clear();
    this.buildList(im.people.map((p) => ({ id: p.id, color: p.color, label: `person ${p.id}`, range: '' })));
    this.status(`loading ${im.people.length} mesh(es)…`);
    this.loaded = Promise.all(im.people.map(async (p) => {
      const key = `${im.name}/${p.id}`;
      if (!this.objects.has(key)) {
        const text = await (await fetch(p.obj)).text();
        const mesh = new THREE.Mesh(parseOBJ(text), new THREE.MeshStandardMaterial({
          color: p.color, roughness: 0.8, metalness: 0.0, side: THREE.DoubleSide }));
        mesh.matrixAutoUpdate = false; // the person's camera -> the overlay's camera (manifest)
        mesh.matrix.fromArray(p.matrix);
        mesh.frustumCulled = false;
        mesh.userData.id = p.id;
        this.objects.set(key, mesh);
      }
      if (this.image === im) this.view.bodies.add(this.objects.get(key));
    }));
    await this.loaded;
    this.placeGround();
    this.status(`${this.images.length} image(s)`);
    if (im.people.length) this.select(im.people[0].id);
    this.update();
  }

  placeGround() {
    const feet = [];
    const centres = [];
    const v = new THREE.Vector3();
    this.view.scene.updateMatrixWorld(true);
    for (const mesh of this.view.bodies.children) {
      const pos = mesh.geometry.attributes.position;
      const low = new THREE.Vector3(0, Infinity, 0);
      const box = new THREE.Box3();
      for (let i = 0; i < pos.count; i += 7) {
        this.view.world.worldToLocal(mesh.localToWorld(v.fromBufferAttribute(pos, i)));
        box.expandByPoint(v);
        if (v.y < low.y) low.copy(v);
      }
      feet.push(low);
      centres.push(box.getCenter(new THREE.Vector3()));
    }
    this.view.placeGround(feet, centres, true);
  }

  update() {
    for (const mesh of this.view.bodies.children) {
      const item = this.items.find((x) => x.id === mesh.userData.id);
      mesh.visible = item ? item.visible : true;
    }
    this.view.requestRender();
  }

  async showParams() {
    const p = this.image && this.image.people.find((x) => x.id === this.selected);
    if (!p) return;
    const rec = await (await fetch(p.params)).json();
    this.renderParams(`Parameters: person ${p.id}`, rec, `${this.image.name}/person_${p.id}/smplx_param.json`);
  }

  state() {
    return { image: this.image ? this.image.name : null, sourceCamera: this.view.useSource, rendered: this.view.frameCount,
             canvas: [this.view.renderer.domElement.width, this.view.renderer.domElement.height], ...this.view.describe(),
             people: this.items.map((x) => ({ id: x.id, visible: x.visible })) };
  }
}

// ------------------------------------------------------------------------------------ start

function api(viewer) {
  const meshOf = (id) => {
    if (viewer instanceof VideoViewer) { const p = viewer.part(id); return p && p.mesh; }
    return viewer.objects.get(`${viewer.image.name}/${id}`);
  };
  // the file's own world: a GLB's scene (placed in the view's frame), the photo's shared camera
  const fileFrame = (id) => {
    if (viewer instanceof VideoViewer) { const p = viewer.part(id); return p && p.root; }
    return viewer.view.world;
  };
  return {
    manifest: viewer.m,
    ready: true,
    whenLoaded: async () => { await viewer.loaded; return viewer.state(); },
    state: () => viewer.state(),
    seek: (t) => viewer.seek(t),
    step: (n) => viewer.step(n),
    play: () => viewer.play(),
    pause: () => viewer.pause(),
    select: (id) => viewer.select(id),
    setVisible: (id, on) => viewer.setVisible(id, on),
    showImage: (i) => viewer.showImage(i),
    params: async () => { await viewer.showParams(); return viewer.paramsShown; },
    /** World positions (base64 float32, x y z per vertex) of the body `id` as posed now; null if not shown. */
    skinnedVertices: (id) => {
      const mesh = meshOf(id);
      if (!mesh) return null;
      viewer.view.scene.updateMatrixWorld(true);
      const n = mesh.geometry.attributes.position.count;
      const out = new Float32Array(3 * n);
      const v = new THREE.Vector3();
      const frame = fileFrame(id);
      for (let i = 0; i < n; i++) {
        if (mesh.isSkinnedMesh) mesh.getVertexPosition(i, v); else v.fromBufferAttribute(mesh.geometry.attributes.position, i);
        frame.worldToLocal(mesh.localToWorld(v)); // the file's world, as the GLB/OBJ says
        out[3 * i] = v.x; out[3 * i + 1] = v.y; out[3 * i + 2] = v.z;
      }
      return { count: n, data: base64(out) };
    },
    bonePosition: (id, name) => {
      const p = viewer instanceof VideoViewer ? viewer.part(id) : null;
      const b = p && p.bones.get(name);
      if (!b) return null;
      viewer.view.scene.updateMatrixWorld(true);
      return p.root.worldToLocal(b.getWorldPosition(new THREE.Vector3())).toArray();
    },
    /**
     * Where the body `id` as posed now lies in the source image, seen by the page's source camera
     * (pixels, origin at the image's top-left corner): its pelvis and the box around its vertices
     * [x0, y0, x1, y1]; null if not shown.
     */
    sourcePixels: (id) => {
      const mesh = meshOf(id);
      if (!mesh) return null;
      const view = viewer.view;
      view.scene.updateMatrixWorld(true);
      const box = [Infinity, Infinity, -Infinity, -Infinity];
      const v = new THREE.Vector3();
      const pos = mesh.geometry.attributes.position;
      for (let i = 0; i < pos.count; i++) {
        if (mesh.isSkinnedMesh) mesh.getVertexPosition(i, v); else v.fromBufferAttribute(pos, i);
        const [x, y] = view.sourcePixel(mesh.localToWorld(v));
        box[0] = Math.min(box[0], x); box[1] = Math.min(box[1], y); box[2] = Math.max(box[2], x); box[3] = Math.max(box[3], y);
      }
      const p = viewer instanceof VideoViewer ? viewer.part(id) : null;
      const pelvis = p && p.bones.get('pelvis');
      return { pelvis: pelvis ? view.sourcePixel(pelvis.getWorldPosition(new THREE.Vector3())) : null, box };
    },
    /** The video frame on screen, drawn at the video's own size: RGBA, base64. */
    videoPixels: () => {
      const v = viewer.video;
      if (!v) return null;
      const c = document.createElement('canvas');
      c.width = v.videoWidth;
      c.height = v.videoHeight;
      const g = c.getContext('2d', { willReadFrequently: true });
      g.drawImage(v, 0, 0);
      return { width: c.width, height: c.height, data: base64(g.getImageData(0, 0, c.width, c.height).data) };
    },
    /** Render now (tests: a screenshot right after a change shows the change). */
    render: () => { viewer.view.render(); return viewer.view.frameCount; },
  };
}

async function start() {
  const response = await fetch('view.json');
  if (!response.ok) throw new Error(`view.json: HTTP ${response.status}`);
  const manifest = await response.json();
  if (manifest.kind === 'video') {
    const viewer = new VideoViewer(manifest);
    viewer.status('loading bodies…');
    viewer.loadAll();
    await viewer.seek(manifest.frame_times[0] ?? 0);
    const first = viewer.tracks.find((tr) => tr.first <= viewer.t + viewer.half) || viewer.tracks[0];
    if (first) viewer.select(first.id);
    window.wbcapView = api(viewer);
  } else {
    const viewer = new ImageViewer(manifest);
    await viewer.showImage(0);
    window.wbcapView = api(viewer);
  }
}

if (location.protocol !== 'file:') {
  start().catch((err) => {
    $('status').textContent = $('status').title = `error: ${err.message || err}`;
    console.error(`wbcap view: ${err.stack || err}`);
  });
}
