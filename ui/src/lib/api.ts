// The only module that talks to Rust (`invoke`, events). Components call these functions;
// types come from ./bindings (generated from the Rust types by ts-rs).
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";

import type { AnswerValue } from "./bindings/AnswerValue";
import type { AppStatus } from "./bindings/AppStatus";
import type { ChangeInfo } from "./bindings/ChangeInfo";
import type { Dashboard } from "./bindings/Dashboard";
import type { ExportDone } from "./bindings/ExportDone";
import type { FieldVersion } from "./bindings/FieldVersion";
import type { ErrorBody } from "./bindings/ErrorBody";
import type { FieldEdit } from "./bindings/FieldEdit";
import type { HouseholdConflicts } from "./bindings/HouseholdConflicts";
import type { HouseholdPage } from "./bindings/HouseholdPage";
import type { HouseholdRow } from "./bindings/HouseholdRow";
import type { GrowthChart } from "./bindings/GrowthChart";
import type { LifeStage } from "./bindings/LifeStage";
import type { ListFilter } from "./bindings/ListFilter";
import type { MemberAdded } from "./bindings/MemberAdded";
import type { NewHousehold } from "./bindings/NewHousehold";
import type { NewMember } from "./bindings/NewMember";
import type { NewVisit } from "./bindings/NewVisit";
import type { NikWarning } from "./bindings/NikWarning";
import type { Pregnancy } from "./bindings/Pregnancy";
import type { ReferralRow } from "./bindings/ReferralRow";
import type { ReferralUpdate } from "./bindings/ReferralUpdate";
import type { SearchHit } from "./bindings/SearchHit";
import type { Sex } from "./bindings/Sex";
import type { SyncState } from "./bindings/SyncState";
import type { TaskRow } from "./bindings/TaskRow";
import type { VisitAdded } from "./bindings/VisitAdded";
import type { VisitForm } from "./bindings/VisitForm";
import type { VisitRow } from "./bindings/VisitRow";

/** A failed command: `code` is machine-readable (translated by the UI), `message` is the
 * store's own text (Indonesian, then English). */
export class ApiError extends Error {
  code: string;
  constructor(body: ErrorBody) {
    super(body.message);
    this.code = body.code;
  }
}

async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(cmd, args);
  } catch (e) {
    const body = e as Partial<ErrorBody> | string;
    if (typeof body === "object" && body && typeof body.code === "string") {
      throw new ApiError(body as ErrorBody);
    }
    throw new ApiError({ code: "unknown", message: String(e) });
  }
}

export const api = {
  appStatus: () => call<AppStatus>("app_status"),
  setup: (user: string, pin: string) => call<AppStatus>("setup", { input: { user, pin } }),
  unlock: (pin: string) => call<AppStatus>("unlock", { pin }),
  lock: () => call<AppStatus>("lock"),
  settings: () => call<Record<string, string>>("get_settings"),
  setSetting: (key: string, value: string) => call<void>("set_setting", { key, value }),

  households: (filter: ListFilter) => call<HouseholdRow[]>("list_households", { filter }),
  search: (text: string, limit = 50) => call<SearchHit[]>("search", { text, limit }),
  household: (id: string) => call<HouseholdPage>("household", { id }),
  createHousehold: (household: NewHousehold) => call<string>("create_household", { household }),
  edit: (id: string, edits: FieldEdit[], what: string) =>
    call<void>("edit_household", { id, edits, what }),
  addMember: (householdId: string, member: NewMember) =>
    call<MemberAdded>("add_member", { householdId, member }),
  checkNik: (nik: string, sex: Sex | null, birthDate: string | null) =>
    call<NikWarning[]>("check_nik", { nik, sex, birthDate }),
  addPregnancy: (memberId: string, pregnancy: Pregnancy) =>
    call<string>("add_pregnancy", { memberId, pregnancy }),
  visitForm: (stage: LifeStage | null) => call<VisitForm>("visit_form", { stage }),
  addVisit: (visit: NewVisit) => call<VisitAdded>("add_visit", { visit }),

  tasks: () => call<TaskRow[]>("tasks"),

  draft: (key: string) => call<string | null>("get_draft", { key }),
  saveDraft: (key: string, json: string) => call<void>("save_draft", { key, json }),
  clearDraft: (key: string) => call<void>("clear_draft", { key }),
  draftKeys: () => call<string[]>("draft_keys"),

  referrals: (status: string | null = null) => call<ReferralRow[]>("list_referrals", { status }),
  updateReferral: (id: string, update: ReferralUpdate) =>
    call<string>("update_referral", { id, update }),
  reviewQueue: (all = false) => call<VisitRow[]>("review_queue", { all }),
  acknowledge: (visitId: string, comment: string | null) =>
    call<string>("acknowledge_visit", { visitId, comment }),
  conflicts: () => call<HouseholdConflicts[]>("conflicts"),
  resolveConflict: (householdId: string, path: string, value: AnswerValue) =>
    call<void>("resolve_conflict", { householdId, path, value }),
  growth: (memberId: string) => call<GrowthChart>("growth_chart", { memberId }),

  dashboard: (month: string, by: "posyandu" | "desa", area: string | null) =>
    call<Dashboard>("dashboard", { month, by, area }),
  exportData: (format: "csv" | "xlsx" | "fhir", area: string | null, month: string | null) =>
    call<ExportDone>("export", { format, area, month }),
  householdHistory: (id: string) => call<ChangeInfo[]>("household_history", { id }),
  fieldHistory: (id: string, path: string) => call<FieldVersion[]>("field_history", { id, path }),

  syncState: () => call<SyncState>("sync_state"),
  syncNow: () => call<SyncState>("sync_now"),
  signIn: (server: string, account: string, password: string) =>
    call<SyncState>("sign_in", { server, account, password }),
  onSyncState: (f: (s: SyncState) => void): Promise<UnlistenFn> =>
    listen<SyncState>("sync-state", (e) => f(e.payload)),
};
