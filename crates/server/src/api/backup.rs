//! `GET /v1/backup` (a consistent copy of the database) and `POST /v1/restore`.

use super::{Json, Query};
use crate::access::Admission;
use crate::backup::{self, BackupProgress, RestoreInfo, RestoreOptions, TempFile};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::StreamExt;

/// Largest backup `POST /v1/restore` takes (the body is streamed to disk, not held in memory).
pub const MAX_RESTORE_BYTES: usize = 1 << 30;

pub async fn download(State(state): State<AppState>) -> ApiResult<Response> {
    let copy = backup::snapshot(&state, &|_: BackupProgress| {}).await?;
    let file = tokio::fs::File::open(copy.path()).await.map_err(|e| ApiError::Internal(format!("opening the backup: {e}")))?;
    let length = file.metadata().await.map_err(|e| ApiError::Internal(format!("reading the backup: {e}")))?.len();
    // The temp copy goes away once the body is sent or the client leaves (file first, then copy).
    let body = futures_util::stream::unfold((file, copy), |(mut file, copy)| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), (file, copy)))
            }
            Err(e) => Some((Err(e), (file, copy))),
        }
    });
    let disposition = format!("attachment; filename=\"corral-{}.db\"", backup::timestamp());
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.sqlite3".to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

#[derive(serde::Deserialize)]
pub struct RestoreQuery {
    /// Restore even though the backup would lock the admin out.
    #[serde(default)]
    pub force: bool,
}

pub async fn restore(
    State(state): State<AppState>,
    Extension(admission): Extension<Admission>,
    Query(q): Query<RestoreQuery>,
    body: Body,
) -> ApiResult<Json<RestoreInfo>> {
    use tokio::io::AsyncWriteExt;
    let upload = TempFile::new(&state, "upload");
    let internal = |e: std::io::Error| ApiError::Internal(format!("storing the uploaded backup: {e}"));
    let mut file = upload.create()?;
    let mut stream = body.into_data_stream();
    let mut received = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadBackup(format!("the upload did not arrive whole: {e}")))?;
        received += chunk.len();
        if received > MAX_RESTORE_BYTES {
            return Err(ApiError::BadBackup(format!("the upload is larger than {} MiB, more than any Corral backup may be", MAX_RESTORE_BYTES >> 20)));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.sync_all().await.map_err(internal)?;
    drop(file);
    if received == 0 {
        return Err(ApiError::BadBackup("the request body is empty; send the backup file itself (application/octet-stream)".into()));
    }
    // The credential this request was authorised with, wherever it came from (a header, or the
    // web UI's session cookie): whether the restore would lock its holder out is checked too.
    let options = RestoreOptions { force: q.force, caller: admission.credential().map(str::to_string) };
    Ok(Json(backup::restore(&state, upload, &options).await?))
}
