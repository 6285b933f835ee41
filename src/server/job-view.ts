/** A job's status as the API shows it: the queue's `JobStatus` with image URLs in place of a count. */
import type { JobStatus } from './jobs.js';

export interface JobView extends Omit<JobStatus, 'imageCount'> {
  /** Paths of the result images (`/v1/generations/{id}/images/{n}.png`), empty until it succeeded. */
  images: string[];
}

export function jobPath(id: string): string {
  return `/v1/generations/${encodeURIComponent(id)}`;
}

export function jobView(status: JobStatus): JobView {
  const { imageCount, ...rest } = status;
  return { ...rest, images: Array.from({ length: imageCount }, (_, n) => `${jobPath(status.id)}/images/${n}.png`) };
}
