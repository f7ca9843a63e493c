-- Two friends and a post each, so the demo has something to like.
INSERT INTO users (id, name) VALUES (1, 'alice'), (2, 'bob');
INSERT INTO posts (id, author, text) VALUES
    (1, 1, 'Hello from alice: like this and watch bob''s page.'),
    (2, 2, 'bob here. My first post on gatehouse.');
