// Typed view of native/os: geometry, holes, fallocate, probes.
import { addon } from './addon.js';

export interface Geometry {
  kind: 'file' | 'block';
  sizeBytes: number;
  /** 0 for files: probe it with O_DIRECT. */
  logicalBlockSize: number;
  physicalBlockSize: number;
}

export const geometry: (fd: number) => Geometry = addon.geometry;
