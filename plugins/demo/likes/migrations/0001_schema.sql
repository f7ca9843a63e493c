-- The likes demo: users, their posts, likes (one per user and post) and
-- the notifications they cause.
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE posts (
    id INTEGER PRIMARY KEY,
    author INTEGER NOT NULL REFERENCES users (id),
    text TEXT NOT NULL,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

CREATE TABLE likes (
    post INTEGER NOT NULL REFERENCES posts (id),
    user INTEGER NOT NULL REFERENCES users (id),
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (post, user)
);

CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    user INTEGER NOT NULL REFERENCES users (id),
    type TEXT NOT NULL,
    post INTEGER NOT NULL REFERENCES posts (id),
    from_user INTEGER NOT NULL REFERENCES users (id),
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    UNIQUE (type, post, from_user)
);

CREATE INDEX notifications_by_user ON notifications (user, id);
