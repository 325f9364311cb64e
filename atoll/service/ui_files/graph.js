// A pipeline drawn as a graph: its stages in a row, a branching stage's branches side by side.

import { el } from "./dom.js";

function drawStage(stage) {
  const branching = stage.branches && stage.branches.length > 0;
  const node = el("div", "node" + (branching ? " branching" : ""),
                  el("div", "op", stage.operator),
                  el("div", "fn", branching ? `${stage.branches.length} branches` : stage.function));
  if (stage.bound && stage.bound.length) node.append(el("div", "bound", stage.bound.join(", ")));
  if (stage.kwargs && stage.kwargs.length) {
    const chips = el("div", "");
    for (const name of stage.kwargs) chips.append(el("span", "chip", "kwarg " + name));
    node.append(chips);
  }
  if (!branching) return node;
  const group = el("div", "seq", node, el("div", "arrow"));
  const row = el("div", "branches");
  stage.branches.forEach((branch, index) => {
    const column = el("div", "branch", el("div", "branch-label", `branch ${index}`));
    column.append(drawSequence(branch));
    row.append(column);
  });
  group.append(row);
  return group;
}

/** Return the drawing of a list of stages (an empty one is the identity). */
export function drawSequence(stages) {
  const seq = el("div", "seq");
  if (!stages.length) {
    seq.append(el("div", "node identity", el("div", "op", "identity"), el("div", "fn", "unchanged")));
    return seq;
  }
  stages.forEach((stage, index) => {
    if (index) seq.append(el("div", "arrow"));
    seq.append(drawStage(stage));
  });
  return seq;
}
