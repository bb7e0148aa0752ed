// Life-stage codes (as the Rust `LifeStage` serialises), in ILP order.
import type { LifeStage } from "./bindings/LifeStage";

export const STAGES: LifeStage[] = [
  "pregnancy",
  "postpartum",
  "infant",
  "toddler",
  "school_adolescent",
  "adult",
  "elderly",
];
