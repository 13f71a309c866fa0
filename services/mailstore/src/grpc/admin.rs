//! `kubemail.admin.v1.Admin` over [`Store`].

use kubemail_proto::admin::admin_server::Admin;
use kubemail_proto::admin::*;
use tonic::{Request, Response, Status};

use crate::store::{AccountUpdate, Store};

/// The Admin gRPC service.
#[derive(Clone)]
pub struct AdminService {
    store: Store,
}

impl AdminService {
    pub fn new(store: Store) -> Self {
        AdminService { store }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn upsert_domain(&self, request: Request<UpsertDomainRequest>) -> Result<Response<Domain>, Status> {
        let r = request.into_inner();
        let domain =
            self.store.upsert_domain(&r.name, &r.catch_all, r.default_quota_storage, r.default_quota_messages).await?;
        Ok(Response::new(domain))
    }

    async fn delete_domain(
        &self,
        request: Request<DeleteDomainRequest>,
    ) -> Result<Response<DeleteDomainResponse>, Status> {
        let r = request.into_inner();
        self.store.delete_domain(&r.name, r.force).await?;
        Ok(Response::new(DeleteDomainResponse {}))
    }

    async fn list_domains(&self, _: Request<ListDomainsRequest>) -> Result<Response<ListDomainsResponse>, Status> {
        Ok(Response::new(ListDomainsResponse { domains: self.store.list_domains().await? }))
    }

    async fn upsert_account(&self, request: Request<UpsertAccountRequest>) -> Result<Response<Account>, Status> {
        let r = request.into_inner();
        let update = AccountUpdate {
            password: Some(r.password).filter(|p| !p.is_empty()),
            quota_storage: r.quota_storage,
            quota_messages: r.quota_messages,
            suspended: r.suspended,
        };
        Ok(Response::new(self.store.upsert_account(&r.address, update).await?))
    }

    async fn delete_account(
        &self,
        request: Request<DeleteAccountRequest>,
    ) -> Result<Response<DeleteAccountResponse>, Status> {
        let r = request.into_inner();
        self.store.delete_account(&r.address, r.purge).await?;
        Ok(Response::new(DeleteAccountResponse { purged: r.purge }))
    }

    async fn list_accounts(
        &self,
        request: Request<ListAccountsRequest>,
    ) -> Result<Response<ListAccountsResponse>, Status> {
        let accounts = self.store.list_accounts(&request.into_inner().domain).await?;
        Ok(Response::new(ListAccountsResponse { accounts }))
    }

    async fn get_account(&self, request: Request<GetAccountRequest>) -> Result<Response<Account>, Status> {
        Ok(Response::new(self.store.account(&request.into_inner().address).await?))
    }

    async fn set_password(
        &self,
        request: Request<SetPasswordRequest>,
    ) -> Result<Response<SetPasswordResponse>, Status> {
        let r = request.into_inner();
        self.store.set_password(&r.address, &r.password).await?;
        Ok(Response::new(SetPasswordResponse {}))
    }

    async fn set_quota(&self, request: Request<SetQuotaRequest>) -> Result<Response<Account>, Status> {
        let r = request.into_inner();
        let update = AccountUpdate {
            quota_storage: Some(r.quota_storage),
            quota_messages: Some(r.quota_messages),
            ..Default::default()
        };
        Ok(Response::new(self.store.update_account(&r.address, update).await?))
    }

    async fn add_alias(&self, request: Request<AddAliasRequest>) -> Result<Response<Alias>, Status> {
        let r = request.into_inner();
        Ok(Response::new(self.store.add_alias(&r.address, &r.target).await?))
    }

    async fn remove_alias(
        &self,
        request: Request<RemoveAliasRequest>,
    ) -> Result<Response<RemoveAliasResponse>, Status> {
        self.store.remove_alias(&request.into_inner().address).await?;
        Ok(Response::new(RemoveAliasResponse {}))
    }

    async fn list_aliases(
        &self,
        request: Request<ListAliasesRequest>,
    ) -> Result<Response<ListAliasesResponse>, Status> {
        let aliases = self.store.list_aliases(&request.into_inner().domain).await?;
        Ok(Response::new(ListAliasesResponse { aliases }))
    }
}
