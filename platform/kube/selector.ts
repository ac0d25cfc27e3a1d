// metav1.LabelSelector semantics, shared by the operator's policy compiler and the orchestrator's
// targets: every matchLabels pair and every matchExpressions requirement must hold; a missing
// selector selects nothing, an empty one everything.

export interface LabelSelectorRequirement {
  key: string;
  operator: string;
  values?: readonly string[];
}

export interface LabelSelector {
  matchLabels?: Readonly<Record<string, string>>;
  matchExpressions?: readonly LabelSelectorRequirement[];
}

export function matchesSelector(
  selector: LabelSelector | undefined | null,
  labels: Readonly<Record<string, string>> | undefined,
): boolean {
  if (selector === undefined || selector === null) return false;
  const l = labels ?? {};
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (l[k] !== v) return false;
  }
  for (const r of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(l, r.key);
    const val = l[r.key];
    const values = r.values ?? [];
    switch (r.operator) {
      case "In":
        if (!has || !values.includes(val!)) return false;
        break;
      case "NotIn":
        if (has && values.includes(val!)) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}
