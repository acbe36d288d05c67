// The 3D load profile: a surface through the measured cells, coloured by height, with
// unmeasured cells left as holes; orbit with the mouse or touch, zoom with the wheel. Loaded
// only when a profile is opened (three.js is most of its weight). It draws on demand, not
// every frame, so an idle viewer costs nothing.
import {
  AmbientLight,
  BufferAttribute,
  DirectionalLight,
  BufferGeometry,
  Color,
  DoubleSide,
  Mesh,
  MeshLambertMaterial,
  PerspectiveCamera,
  Scene,
  WebGLRenderer,
} from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { heightColour, maxHeight, type Profile } from './profile';

export interface Viewer {
  resize(): void;
  dispose(): void;
}

/** Vertices at cell centres; a triangle only where all three of its cells were measured. */
function surface(profile: Profile): BufferGeometry {
  const { rows, cols, cell_size_mm, heights_mm } = profile;
  const max = maxHeight(profile) || 1;
  const cell = cell_size_mm / 1000;
  const positions = new Float32Array(rows * cols * 3);
  const colours = new Float32Array(rows * cols * 3);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const h = heights_mm[r]?.[c] ?? 0;
      const i = (r * cols + c) * 3;
      positions[i] = (c - cols / 2) * cell;
      positions[i + 1] = h / 1000;
      positions[i + 2] = (r - rows / 2) * cell;
      const [red, green, blue] = heightColour(h / max);
      colours[i] = red / 255;
      colours[i + 1] = green / 255;
      colours[i + 2] = blue / 255;
    }
  }
  const measured = (r: number, c: number) => (heights_mm[r]?.[c] ?? 0) > 0;
  const indices: number[] = [];
  for (let r = 0; r + 1 < rows; r++) {
    for (let c = 0; c + 1 < cols; c++) {
      const a = r * cols + c;
      const b = a + 1;
      const d = a + cols;
      const e = d + 1;
      if (measured(r, c) && measured(r, c + 1) && measured(r + 1, c)) indices.push(a, d, b);
      if (measured(r, c + 1) && measured(r + 1, c) && measured(r + 1, c + 1)) indices.push(b, d, e);
    }
  }
  const geometry = new BufferGeometry();
  geometry.setAttribute('position', new BufferAttribute(positions, 3));
  geometry.setAttribute('color', new BufferAttribute(colours, 3));
  geometry.setIndex(rows * cols > 65535 ? new BufferAttribute(new Uint32Array(indices), 1) : indices);
  return geometry;
}

export function show(canvas: HTMLCanvasElement, profile: Profile, background: string): Viewer {
  // preserveDrawingBuffer lets the picture be read back (a screenshot, a test's pixel check).
  const renderer = new WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
  const scene = new Scene();
  scene.background = new Color(background);
  const geometry = surface(profile);
  geometry.computeVertexNormals();
  // Light from above and one side, so the heap's shape reads as well as its colours.
  const material = new MeshLambertMaterial({ vertexColors: true, side: DoubleSide });
  scene.add(new Mesh(geometry, material));
  scene.add(new AmbientLight(0xffffff, 1.6));
  const sun = new DirectionalLight(0xffffff, 1.6);
  sun.position.set(1, 2, 0.5);
  scene.add(sun);

  const span = (Math.max(profile.rows, profile.cols) * profile.cell_size_mm) / 1000;
  const camera = new PerspectiveCamera(45, 1, span / 100, span * 20);
  camera.position.set(span * 0.6, span * 0.7, span * 0.9);
  const controls = new OrbitControls(camera, canvas);
  controls.target.set(0, maxHeight(profile) / 2000, 0);
  controls.update();

  const draw = () => renderer.render(scene, camera);
  controls.addEventListener('change', draw);

  function resize() {
    const { clientWidth: width, clientHeight: height } = canvas;
    renderer.setSize(width, height, false);
    camera.aspect = width / Math.max(height, 1);
    camera.updateProjectionMatrix();
    draw();
  }
  resize();

  return {
    resize,
    dispose() {
      controls.dispose();
      geometry.dispose();
      material.dispose();
      renderer.dispose();
    },
  };
}
