import { Alert, Button, Card, Center, PasswordInput, Stack, Text, TextInput, Title } from "@mantine/core";
import { useState, type FormEvent } from "react";
import { ApiError, api } from "../api.ts";

/** Signs a browser in with a user name and password (`POST /v1/login`; the session is a cookie). */
export function LoginPage({ onSignedIn }: { onSignedIn: () => void }) {
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  // Too many failed attempts: the API's message says how long to wait.
  const [throttled, setThrottled] = useState(false);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!user.trim() || !password) {
      setError("Enter your user name and password.");
      return;
    }
    setBusy(true);
    setError(null);
    setThrottled(false);
    try {
      await api.login(user.trim(), password);
      onSignedIn();
    } catch (err) {
      // The API's own words: a wrong password, too many attempts, or an unreachable server.
      setError(err instanceof Error ? err.message : String(err));
      setThrottled(err instanceof ApiError && err.status === 429);
      setPassword("");
    } finally {
      setBusy(false);
    }
  };

  return (
    <Center mih="100vh" p="md">
      <Card withBorder shadow="sm" padding="xl" w={380}>
        <form onSubmit={submit} data-testid="login-form">
          <Stack gap="md">
            <div>
              <Title order={2} c="teal">
                Corral
              </Title>
              <Text size="sm" c="dimmed">
                Sign in to the control plane
              </Text>
            </div>
            {error && (
              <Alert color={throttled ? "orange" : "red"} title={throttled ? "Too many attempts" : undefined} data-testid="login-error" data-code={throttled ? "too_many_attempts" : undefined}>
                <span data-testid="login-error-message">{error}</span>
              </Alert>
            )}
            <TextInput
              label="User"
              autoComplete="username"
              value={user}
              onChange={(e) => setUser(e.currentTarget.value)}
              data-testid="login-user"
              autoFocus
            />
            <PasswordInput
              label="Password"
              autoComplete="current-password"
              value={password}
              onChange={(e) => setPassword(e.currentTarget.value)}
              data-testid="login-password"
            />
            <Button type="submit" loading={busy} data-testid="login-submit">
              Sign in
            </Button>
            <Text size="xs" c="dimmed">
              Administrators can also open the link the control plane printed when it started (it carries the admin token).
            </Text>
          </Stack>
        </form>
      </Card>
    </Center>
  );
}
