"""Numbered, additive-only schema migrations, applied in order at start-up.

Never edit or remove a migration that has shipped: add a new one.
``PRAGMA user_version`` records the last one applied.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: playbooks and their versions, failures, executions and their steps.
    """
    CREATE TABLE playbooks (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE TABLE playbook_versions (
        playbook_id        TEXT NOT NULL REFERENCES playbooks(id),
        version            TEXT NOT NULL,
        definition         TEXT NOT NULL,   -- the validated playbook, as JSON
        source_yaml        TEXT NOT NULL,   -- the YAML it came from (or was exported to)
        source_file        TEXT,
        active             INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
        created_at         TEXT NOT NULL,
        created_by         TEXT NOT NULL,
        reason             TEXT NOT NULL,
        recommendation_id  TEXT,
        changes            TEXT,            -- JSON: what changed from the previous version
        PRIMARY KEY (playbook_id, version)
    );
    CREATE UNIQUE INDEX one_active_version ON playbook_versions(playbook_id) WHERE active = 1;

    CREATE TABLE failures (
        id           TEXT PRIMARY KEY,
        component    TEXT NOT NULL,
        error_id     TEXT NOT NULL,
        severity     TEXT NOT NULL,
        message      TEXT NOT NULL,
        detected_at  TEXT NOT NULL
    );
    CREATE INDEX failures_by_component ON failures(component, detected_at);

    CREATE TABLE executions (
        id                   TEXT PRIMARY KEY,
        playbook_id          TEXT NOT NULL,
        playbook_version     TEXT NOT NULL,
        failure_id           TEXT REFERENCES failures(id),
        error_id             TEXT NOT NULL,
        component            TEXT NOT NULL,
        status               TEXT NOT NULL CHECK (status IN
                               ('running', 'resolved', 'escalated', 'failed', 'interrupted')),
        started_at           TEXT NOT NULL,
        completed_at         TEXT,
        duration_seconds     REAL,
        resolved_by          TEXT,     -- the step id that fixed it, or 'manual_intervention'
        what_fixed_it        TEXT,
        playbook_sufficient  INTEGER CHECK (playbook_sufficient IN (0, 1)),
        detail               TEXT,     -- why it ended the way it did
        FOREIGN KEY (playbook_id, playbook_version)
            REFERENCES playbook_versions(playbook_id, version)
    );
    CREATE INDEX executions_by_playbook ON executions(playbook_id, playbook_version, started_at);
    CREATE INDEX executions_by_status ON executions(status);

    CREATE TABLE execution_steps (
        id                INTEGER PRIMARY KEY,
        execution_id      TEXT NOT NULL REFERENCES executions(id),
        seq               INTEGER NOT NULL,  -- 1, 2, 3 … in the order they ran
        step_id           TEXT NOT NULL,
        name              TEXT NOT NULL,
        action            TEXT NOT NULL,
        target            TEXT,
        attempt           INTEGER NOT NULL DEFAULT 1,
        started_at        TEXT NOT NULL,
        completed_at      TEXT,
        duration_seconds  REAL,
        outcome           TEXT NOT NULL CHECK (outcome IN
                            ('running', 'success', 'failure', 'timeout', 'error', 'interrupted')),
        result            TEXT,
        output            TEXT,              -- JSON the action reported
        error             TEXT,
        transitioned_to   TEXT,
        UNIQUE (execution_id, seq)
    );
    """,
    # 2: incidents and their phases; every viability evaluation with its reason.
    """
    CREATE TABLE incidents (
        id           TEXT PRIMARY KEY,
        component    TEXT NOT NULL,
        error_id     TEXT NOT NULL,
        failure_id   TEXT REFERENCES failures(id),
        phase        TEXT NOT NULL CHECK (phase IN
                       ('detected', 'recovering', 'executing', 'resolved', 'escalated', 'failed')),
        detail       TEXT,
        attempts     INTEGER NOT NULL DEFAULT 0,
        opened_at    TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        closed_at    TEXT
    );
    CREATE INDEX incidents_by_component ON incidents(component, opened_at);
    CREATE INDEX incidents_open ON incidents(phase) WHERE closed_at IS NULL;

    CREATE TABLE viability_evaluations (
        id                  INTEGER PRIMARY KEY,
        incident_id         TEXT NOT NULL REFERENCES incidents(id),
        component           TEXT NOT NULL,
        evaluated_at        TEXT NOT NULL,
        allowed             INTEGER NOT NULL CHECK (allowed IN (0, 1)),
        reason              TEXT NOT NULL,
        detail              TEXT NOT NULL,
        attempts_in_window  INTEGER NOT NULL,
        max_attempts        INTEGER NOT NULL,
        termination_rate    REAL,
        breaker             TEXT NOT NULL
    );
    CREATE INDEX viability_by_incident ON viability_evaluations(incident_id);

    ALTER TABLE executions ADD COLUMN incident_id TEXT REFERENCES incidents(id);
    """,
    # 3: a failure explained by another component's (a bridge's heartbeat lost with the broker).
    """
    ALTER TABLE failures ADD COLUMN symptom_of TEXT;
    """,
    # 4: the tamper-evident audit log; operator controls; escalations and their acks.
    """
    CREATE TABLE audit_log (
        seq        INTEGER PRIMARY KEY,
        at         TEXT NOT NULL,
        actor      TEXT NOT NULL,     -- 'supervisor' or a named person
        action     TEXT NOT NULL,     -- e.g. 'safe_mode.enter', 'maintenance.start'
        subject    TEXT NOT NULL,     -- a component, an incident, 'site'
        detail     TEXT NOT NULL,     -- JSON
        prev_hash  TEXT NOT NULL,
        hash       TEXT NOT NULL UNIQUE
    );
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

    CREATE TABLE safe_mode (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        active      INTEGER NOT NULL CHECK (active IN (0, 1)),
        since       TEXT,
        reason      TEXT,
        changed_by  TEXT NOT NULL,
        changed_at  TEXT NOT NULL
    );

    CREATE TABLE maintenance_windows (
        id          TEXT PRIMARY KEY,
        component   TEXT NOT NULL,   -- a component name, or '*' for the whole site
        starts_at   TEXT NOT NULL,
        ends_at     TEXT NOT NULL,
        reason      TEXT NOT NULL,
        created_by  TEXT NOT NULL,
        ended_at    TEXT,            -- set when it ended early, by hand
        ended_by    TEXT
    );
    CREATE INDEX maintenance_by_end ON maintenance_windows(ends_at);

    CREATE TABLE escalations (
        id               TEXT PRIMARY KEY,
        incident_id      TEXT REFERENCES incidents(id),
        component        TEXT NOT NULL,
        severity         TEXT NOT NULL,
        message          TEXT NOT NULL,
        raised_at        TEXT NOT NULL,
        level            INTEGER NOT NULL DEFAULT 0,   -- the last notification level sent
        acknowledged_at  TEXT,
        acknowledged_by  TEXT,
        closed_at        TEXT
    );
    CREATE INDEX escalations_open ON escalations(raised_at) WHERE acknowledged_at IS NULL;
    """,
    # 5: failures that were expected (a maintenance window covered them).
    """
    ALTER TABLE failures ADD COLUMN expected INTEGER NOT NULL DEFAULT 0 CHECK (expected IN (0, 1));
    """,
    # 6: the failure memory (records with context and resolution) and learned patterns;
    # executions of a learned fix are told apart from playbook runs.
    """
    CREATE TABLE failure_memory (
        failure_id   TEXT PRIMARY KEY,
        error_id     TEXT NOT NULL,
        component    TEXT NOT NULL,
        detected_at  TEXT NOT NULL,
        record       TEXT NOT NULL,   -- FailureRecord as JSON
        outcome      TEXT NOT NULL CHECK (outcome IN
                       ('open', 'resolved_by_supervisor', 'resolved_by_human', 'unresolved')),
        fix_action   TEXT,
        fix_target   TEXT,
        count        INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1),
        compressed   INTEGER NOT NULL DEFAULT 0 CHECK (compressed IN (0, 1)),
        updated_at   TEXT NOT NULL
    );
    CREATE INDEX failure_memory_by_error ON failure_memory(error_id, component);
    CREATE INDEX failure_memory_by_time ON failure_memory(detected_at);

    CREATE TABLE memory_patterns (
        id                  TEXT PRIMARY KEY,
        error_id            TEXT NOT NULL,
        component           TEXT NOT NULL,
        tokens              TEXT NOT NULL,   -- JSON list: what the members' messages share
        fix_action          TEXT NOT NULL,
        fix_target          TEXT,
        members             TEXT NOT NULL,   -- JSON list of failure ids
        created_at          TEXT NOT NULL,
        times_matched       INTEGER NOT NULL DEFAULT 0,
        times_resolved      INTEGER NOT NULL DEFAULT 0,
        last_matched        TEXT,
        flagged_for_review  INTEGER NOT NULL DEFAULT 0 CHECK (flagged_for_review IN (0, 1)),
        flag_reason         TEXT
    );
    CREATE INDEX memory_patterns_by_error ON memory_patterns(error_id, component);

    ALTER TABLE executions ADD COLUMN kind TEXT NOT NULL DEFAULT 'playbook'
        CHECK (kind IN ('playbook', 'learned_fix'));
    """,
    # 7: operators' commands to running executions (pause, resume, cancel, override),
    # written by the CLI and applied by the daemon.
    """
    CREATE TABLE execution_commands (
        id            INTEGER PRIMARY KEY,
        execution_id  TEXT NOT NULL,        -- an execution id, or '*' for all (emergency stop)
        command       TEXT NOT NULL CHECK (command IN
                        ('pause', 'resume', 'cancel', 'override', 'emergency_stop')),
        step_id       TEXT,                 -- override: the step
        outcome       TEXT CHECK (outcome IN ('success', 'failure')),
        issued_by     TEXT NOT NULL,
        reason        TEXT NOT NULL,
        issued_at     TEXT NOT NULL,
        applied_at    TEXT,
        result        TEXT                  -- what applying it did, or why it could not
    );
    CREATE INDEX execution_commands_pending ON execution_commands(id) WHERE applied_at IS NULL;
    """,
    # 8: a step whose `when:` did not hold is recorded as `skipped`. SQLite cannot widen a
    # CHECK in place, so the table is rebuilt with every row copied: nothing is dropped.
    """
    CREATE TABLE execution_steps_v8 (
        id                INTEGER PRIMARY KEY,
        execution_id      TEXT NOT NULL REFERENCES executions(id),
        seq               INTEGER NOT NULL,
        step_id           TEXT NOT NULL,
        name              TEXT NOT NULL,
        action            TEXT NOT NULL,
        target            TEXT,
        attempt           INTEGER NOT NULL DEFAULT 1,
        started_at        TEXT NOT NULL,
        completed_at      TEXT,
        duration_seconds  REAL,
        outcome           TEXT NOT NULL CHECK (outcome IN ('running', 'success', 'failure',
                            'timeout', 'error', 'interrupted', 'skipped')),
        result            TEXT,
        output            TEXT,
        error             TEXT,
        transitioned_to   TEXT,
        UNIQUE (execution_id, seq)
    );
    INSERT INTO execution_steps_v8 SELECT id, execution_id, seq, step_id, name, action, target,
        attempt, started_at, completed_at, duration_seconds, outcome, result, output, error,
        transitioned_to FROM execution_steps;
    DROP TABLE execution_steps;
    ALTER TABLE execution_steps_v8 RENAME TO execution_steps;
    """,
    # 9: workflow learning. Metrics kept up to date per execution (``learned`` marks the
    # executions already counted, in the same transaction as the counts); recommendations
    # and their decisions; analyses; versions that failed and the rollbacks; users and roles.
    """
    ALTER TABLE executions ADD COLUMN learned INTEGER NOT NULL DEFAULT 0
        CHECK (learned IN (0, 1));
    CREATE INDEX executions_to_learn ON executions(started_at) WHERE learned = 0;
    CREATE INDEX executions_by_playbook_time ON executions(playbook_id, started_at);
    CREATE INDEX executions_by_time ON executions(started_at);

    ALTER TABLE playbook_versions ADD COLUMN status TEXT NOT NULL DEFAULT 'ok'
        CHECK (status IN ('ok', 'failed'));
    ALTER TABLE playbook_versions ADD COLUMN parent_version TEXT;
    ALTER TABLE playbook_versions ADD COLUMN approved_by TEXT;

    CREATE TABLE learning_version_metrics (
        playbook_id          TEXT NOT NULL,
        version              TEXT NOT NULL,
        executions           INTEGER NOT NULL DEFAULT 0,
        resolutions          INTEGER NOT NULL DEFAULT 0,
        escalations          INTEGER NOT NULL DEFAULT 0,
        failures             INTEGER NOT NULL DEFAULT 0,   -- the playbook's deadline passed
        interruptions        INTEGER NOT NULL DEFAULT 0,
        resolution_time_sum  REAL NOT NULL DEFAULT 0,      -- over resolutions
        first_at             TEXT,
        last_at              TEXT,
        PRIMARY KEY (playbook_id, version)
    );
    CREATE TABLE learning_step_metrics (
        playbook_id    TEXT NOT NULL,
        version        TEXT NOT NULL,
        step_id        TEXT NOT NULL,
        name           TEXT NOT NULL,
        action         TEXT NOT NULL,
        executions     INTEGER NOT NULL DEFAULT 0,   -- executions in which it ran
        successes      INTEGER NOT NULL DEFAULT 0,   -- ... and ended in success
        skips          INTEGER NOT NULL DEFAULT 0,   -- executions in which its when: was false
        attempts       INTEGER NOT NULL DEFAULT 0,
        timeouts       INTEGER NOT NULL DEFAULT 0,   -- attempts that timed out
        fixes          INTEGER NOT NULL DEFAULT 0,   -- executions it resolved
        duration_sum   REAL NOT NULL DEFAULT 0,      -- over attempts
        PRIMARY KEY (playbook_id, version, step_id)
    );
    -- Durations as counts per logarithmic bucket (learning/histogram.py): percentiles
    -- without keeping every value, and counted in with plain upserts.
    CREATE TABLE learning_histograms (
        playbook_id  TEXT NOT NULL,
        version      TEXT NOT NULL,
        subject      TEXT NOT NULL,   -- a step id, or '' for the version
        kind         TEXT NOT NULL CHECK (kind IN ('resolution', 'attempt', 'success')),
        bucket       TEXT NOT NULL,
        count        INTEGER NOT NULL,
        PRIMARY KEY (playbook_id, version, subject, kind, bucket)
    );
    CREATE TABLE learning_step_pairs (
        playbook_id      TEXT NOT NULL,
        version          TEXT NOT NULL,
        earlier_step     TEXT NOT NULL,
        earlier_outcome  TEXT NOT NULL CHECK (earlier_outcome IN ('success', 'failure')),
        step_id          TEXT NOT NULL,
        runs             INTEGER NOT NULL DEFAULT 0,   -- executions where it ran after that
        successes        INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (playbook_id, version, earlier_step, earlier_outcome, step_id)
    );
    CREATE TABLE learning_paths (
        playbook_id  TEXT NOT NULL,
        version      TEXT NOT NULL,
        path         TEXT NOT NULL,   -- JSON list of step ids, then how it ended
        executions   INTEGER NOT NULL DEFAULT 0,
        resolutions  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (playbook_id, version, path)
    );

    CREATE TABLE learning_analyses (
        id               TEXT PRIMARY KEY,
        started_at       TEXT NOT NULL,
        finished_at      TEXT NOT NULL,
        trigger          TEXT NOT NULL,   -- 'schedule', 'cli', 'simulation'
        recommendations  INTEGER NOT NULL,
        report           TEXT NOT NULL    -- JSON: per playbook, the findings and why
    );
    -- When each playbook was last analysed: an analysis judges the executions since.
    CREATE TABLE learning_playbook_analyses (
        playbook_id  TEXT PRIMARY KEY,
        analysed_at  TEXT NOT NULL
    );
    CREATE TABLE learning_recommendations (
        id               TEXT PRIMARY KEY,
        playbook_id      TEXT NOT NULL,
        base_version     TEXT NOT NULL,
        type             TEXT NOT NULL,
        priority         TEXT NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
        confidence       REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
        sample_size      INTEGER NOT NULL,
        summary          TEXT NOT NULL,
        change           TEXT NOT NULL,   -- JSON: the concrete change
        evidence         TEXT NOT NULL,   -- JSON
        expected_impact  TEXT NOT NULL,   -- JSON
        fingerprint      TEXT NOT NULL,
        analysis_id      TEXT REFERENCES learning_analyses(id),
        status           TEXT NOT NULL CHECK (status IN
                           ('pending', 'approved', 'rejected', 'archived', 'superseded')),
        generated_at     TEXT NOT NULL,
        expires_at       TEXT NOT NULL,
        decided_at       TEXT,
        decided_by       TEXT,
        decision_reason  TEXT,
        new_version      TEXT
    );
    CREATE INDEX recommendations_pending ON learning_recommendations(playbook_id)
        WHERE status = 'pending';

    CREATE TABLE version_rollbacks (
        id                TEXT PRIMARY KEY,
        playbook_id       TEXT NOT NULL,
        from_version      TEXT NOT NULL,
        to_version        TEXT NOT NULL,
        at                TEXT NOT NULL,
        by                TEXT NOT NULL,   -- 'supervisor' (the automatic rule) or a person
        reason            TEXT NOT NULL,
        report            TEXT NOT NULL    -- JSON: the investigation report
    );

    CREATE TABLE users (
        name           TEXT PRIMARY KEY,
        role           TEXT NOT NULL CHECK (role IN ('admin', 'system_owner', 'viewer')),
        password_hash  TEXT NOT NULL,
        created_at     TEXT NOT NULL,
        disabled       INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1))
    );
    """,
    # 10: the admin page's sessions (the token only as its SHA-256) and login attempts,
    # kept in the store so the rate limit holds across restarts and processes.
    """
    CREATE TABLE web_sessions (
        token_hash   TEXT PRIMARY KEY,
        user         TEXT NOT NULL REFERENCES users(name),
        csrf         TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        expires_at   TEXT NOT NULL
    );
    CREATE INDEX web_sessions_by_expiry ON web_sessions(expires_at);
    CREATE TABLE login_attempts (
        id      INTEGER PRIMARY KEY,
        user    TEXT NOT NULL,
        remote  TEXT NOT NULL,
        at      TEXT NOT NULL,
        ok      INTEGER NOT NULL CHECK (ok IN (0, 1))
    );
    CREATE INDEX login_attempts_by_time ON login_attempts(at);
    """,
    # 11: what the recovery policy must not forget across a restart (each component's
    # breaker, its cooldown and its last failure signature); an escalation that a repeated
    # failure of its component updates instead of raising a new one.
    """
    CREATE TABLE recovery_state (
        component      TEXT PRIMARY KEY,
        breaker        TEXT NOT NULL CHECK (breaker IN ('closed', 'open', 'half_open')),
        opened_at      TEXT,                 -- when the breaker last opened
        open_for_s     REAL NOT NULL,        -- the cooldown it reached
        failed_trials  INTEGER NOT NULL,
        signature      TEXT,                 -- JSON: the last unsuccessful execution's
        rearmed_at     TEXT,                 -- attempts before this do not count
        updated_at     TEXT NOT NULL
    );
    ALTER TABLE escalations ADD COLUMN occurrences INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE escalations ADD COLUMN last_incident_id TEXT REFERENCES incidents(id);
    ALTER TABLE escalations ADD COLUMN last_detail TEXT;
    ALTER TABLE escalations ADD COLUMN updated_at TEXT;
    CREATE INDEX escalations_by_component ON escalations(component, raised_at);
    CREATE INDEX viability_by_time ON viability_evaluations(evaluated_at);
    CREATE INDEX executions_by_completion ON executions(completed_at);
    """,
    # 12: a login attempt is reserved before its password is hashed, in the transaction
    # that counts the failures (issue 13: 149 of 150 concurrent guesses were checked).
    # A reserved row counts as a failure until its outcome is written; one never written
    # (a crash) stops counting at pending_until. Counted per (user, address).
    """
    ALTER TABLE login_attempts ADD COLUMN pending_until TEXT;
    CREATE INDEX login_attempts_by_pair ON login_attempts(user, remote, at);
    """,
    # 13: the supervisor's verdict on a run: was the component healthy after it (a fresh
    # probe in the daemon, the incident's state in the simulator)? 1 healthy, 0 not, NULL
    # unknown (older rows, runs nobody judged). Learning counts a run a success only
    # when it resolved and this is not 0.
    """
    ALTER TABLE executions ADD COLUMN healthy_after INTEGER
        CHECK (healthy_after IN (0, 1));
    """,
    # 14: verdicts learning remembers (issue 14). A change's key independent of the
    # version it was proposed for; what a version made by a recommendation really did
    # against the prediction; every rejection of a change (by a person, or a rollback
    # away from the version it made), with the executions behind it then.
    """
    ALTER TABLE learning_recommendations ADD COLUMN change_key TEXT;
    ALTER TABLE learning_recommendations ADD COLUMN prediction_check TEXT;  -- JSON
    CREATE INDEX recommendations_by_change ON learning_recommendations(playbook_id, change_key);
    CREATE TABLE learning_rejections (
        id                 INTEGER PRIMARY KEY,
        playbook_id        TEXT NOT NULL,
        change_key         TEXT NOT NULL,
        recommendation_id  TEXT NOT NULL,
        kind               TEXT NOT NULL CHECK (kind IN ('rejected', 'rolled_back')),
        version            TEXT,            -- the version rolled back, for 'rolled_back'
        by                 TEXT NOT NULL,
        at                 TEXT NOT NULL,
        reason             TEXT NOT NULL,
        executions         INTEGER NOT NULL  -- the playbook's counted executions then
    );
    CREATE INDEX rejections_by_change ON learning_rejections(playbook_id, change_key, at);
    CREATE INDEX rollbacks_by_playbook ON version_rollbacks(playbook_id, at);
    """,
    # 15: trial versions (BR-WF-034): a change approved as a trial runs on a share of the
    # incidents beside its base (which stays active) until the statistics promote or drop
    # it; at most one running trial per playbook. A recommendation says whether replay
    # can judge it or it should be tried.
    """
    CREATE TABLE learning_trials (
        id                 TEXT PRIMARY KEY,
        playbook_id        TEXT NOT NULL,
        base_version       TEXT NOT NULL,
        trial_version      TEXT NOT NULL,
        share              REAL NOT NULL CHECK (share > 0 AND share < 1),
        recommendation_id  TEXT REFERENCES learning_recommendations(id),
        started_at         TEXT NOT NULL,
        started_by         TEXT NOT NULL,
        status             TEXT NOT NULL CHECK (status IN ('running', 'promoted', 'dropped')),
        decided_at         TEXT,
        decided_by         TEXT,
        reason             TEXT,
        statistics         TEXT,            -- JSON: both arms' figures at the last look
        FOREIGN KEY (playbook_id, base_version)
            REFERENCES playbook_versions(playbook_id, version),
        FOREIGN KEY (playbook_id, trial_version)
            REFERENCES playbook_versions(playbook_id, version)
    );
    CREATE UNIQUE INDEX one_running_trial ON learning_trials(playbook_id)
        WHERE status = 'running';
    ALTER TABLE learning_recommendations ADD COLUMN trial INTEGER NOT NULL DEFAULT 0
        CHECK (trial IN (0, 1));
    """,
    # 16: API tokens per user (issue 16), for scripts: only a token's SHA-256 is kept, it
    # acts with its user's role while that user is enabled, until it expires or is revoked.
    """
    CREATE TABLE api_tokens (
        id          TEXT PRIMARY KEY,           -- shown in lists, named to revoke
        token_hash  TEXT NOT NULL UNIQUE,
        user        TEXT NOT NULL REFERENCES users(name),
        label       TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        created_by  TEXT NOT NULL,
        expires_at  TEXT,                       -- NULL: until revoked
        revoked_at  TEXT,
        revoked_by  TEXT
    );
    CREATE INDEX api_tokens_by_user ON api_tokens(user, created_at);
    """,
    # 17: the audit archive (issue 16). Old entries leave the table for compressed segment
    # files; each segment is recorded here (its last entry's hash is the anchor the first
    # live entry chains from). Only entries an archive record covers may be deleted.
    # Indexes for retention's "does anything still refer to it" questions.
    """
    CREATE TABLE audit_archive (
        last_seq     INTEGER PRIMARY KEY,
        first_seq    INTEGER NOT NULL,
        last_hash    TEXT NOT NULL,
        file         TEXT NOT NULL,      -- the segment's file name in the archive directory
        sha256       TEXT NOT NULL,      -- of the segment file's bytes
        archived_at  TEXT NOT NULL
    );
    CREATE TRIGGER audit_archive_no_update BEFORE UPDATE ON audit_archive
        BEGIN SELECT RAISE(ABORT, 'the audit archive is append-only'); END;
    CREATE TRIGGER audit_archive_no_delete BEFORE DELETE ON audit_archive
        BEGIN SELECT RAISE(ABORT, 'the audit archive is append-only'); END;
    DROP TRIGGER audit_log_no_delete;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        WHEN OLD.seq > (SELECT COALESCE(MAX(last_seq), 0) FROM audit_archive)
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    -- retention asks whether anything still refers to a failure or an incident
    CREATE INDEX executions_by_failure ON executions(failure_id);
    CREATE INDEX executions_by_incident ON executions(incident_id);
    CREATE INDEX incidents_by_failure ON incidents(failure_id);
    """,
    # 18: people's feedback on an execution (issue 17): was the playbook enough, which of
    # its steps wasted time, was the escalation timed right. Several people may give it;
    # each row is one person's word at one time, audited with it. It leaves with its
    # execution (retention).
    """
    CREATE TABLE execution_feedback (
        id            INTEGER PRIMARY KEY,
        execution_id  TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
        given_by      TEXT NOT NULL,
        given_at      TEXT NOT NULL,
        sufficient    INTEGER CHECK (sufficient IN (0, 1)),   -- NULL: not said
        wasted_steps  TEXT NOT NULL DEFAULT '[]',             -- JSON: step ids of the execution
        escalation    TEXT CHECK (escalation IN
                        ('too_late', 'too_early', 'right', 'not_escalated_should_have')),
        note          TEXT
    );
    CREATE INDEX feedback_by_execution ON execution_feedback(execution_id, given_at);
    """,
    # 19: each learned fix's own record (issue 17), per learned-fix playbook whatever the
    # evidence that chose it (a pattern or similar failures): how often it ran before the
    # playbook, how often that resolved the failure, the failures in a row since its last
    # success (do no harm: at memory.review_min_matches it no longer runs first), and when
    # it last ran.
    """
    CREATE TABLE learned_fix_uses (
        playbook_id      TEXT PRIMARY KEY,    -- PLAY-LEARNED-...
        ran_first        INTEGER NOT NULL DEFAULT 0,
        resolved         INTEGER NOT NULL DEFAULT 0,
        failed_in_a_row  INTEGER NOT NULL DEFAULT 0,
        last_used        TEXT
    );
    """,
]
